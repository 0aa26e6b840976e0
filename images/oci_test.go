// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/waggle-dev/waggle/internal/progress"
)

// entry is one tar entry of a test layer.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarBytes(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)[:hdr.Size]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerOf(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, env []string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testRegistry starts an in-process registry and pushes img; it returns the reference.
func testRegistry(t *testing.T, img v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/flatten:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func requireE2fs(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"mke2fs", "debugfs"} {
		if _, err := lookPath(tool); err != nil {
			t.Skipf("needs e2fsprogs: %v", err)
		}
	}
}

// debugfs runs one debugfs request against an ext4 file, without mounting it.
func debugfs(t *testing.T, image, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, image).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", request, err, out)
	}
	return string(out)
}

// catFile returns a file's content from the image; ok is false if it is missing.
func catFile(t *testing.T, image, path string) (string, bool) {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, image).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	if len(out) == 0 && strings.Contains(debugfs(t, image, "stat "+path), "not found") {
		return "", false
	}
	return string(out), true
}

func TestImportFlattensRegistryImage(t *testing.T) {
	requireE2fs(t)
	rnd, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	randomTar, _ := rnd.Uncompressed()
	tr := tar.NewReader(randomTar)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	randomBody, _ := io.ReadAll(tr)
	randomTar.Close()

	lower := layerOf(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\n"},
		entry{name: "etc/keep.txt", body: "lower\n"},
		entry{name: "etc/gone.txt", body: "deleted above\n"},
		entry{name: "opq/a.txt", body: "hidden by an opaque dir\n"},
		entry{name: "usr/bin/suid", body: "#!/bin/sh\n", mode: 0o4755},
		entry{name: "usr/lib/orig", body: "linked\n"},
		entry{name: "usr/lib/hard", typ: tar.TypeLink, link: "usr/lib/orig"},
		entry{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		entry{name: "dev/null", typ: tar.TypeChar},
	)
	upper := layerOf(t,
		entry{name: "etc/keep.txt", body: "upper\n"},
		entry{name: "etc/.wh.gone.txt"},
		entry{name: "opq/.wh..wh..opq"},
		entry{name: "opq/b.txt", body: "new\n"},
	)
	img := imageOf(t, []string{"PATH=/usr/local/bin:/usr/bin:/bin", "FOO=bar", `BAD="quoted"`}, rnd, lower, upper)
	ref := testRegistry(t, img)
	cacheDir := t.TempDir()
	var out bytes.Buffer
	got, err := Import(context.Background(), ImportConfig{CacheDir: cacheDir, Progress: progress.New(&out)}, ref, "flat")
	if err != nil {
		t.Fatalf("Import: %v\n%s", err, out.String())
	}
	t.Logf("progress:\n%s", out.String())

	files := []struct {
		path string
		want string // "" means must be missing
	}{
		{"/" + hdr.Name, string(randomBody)},
		{"/etc/keep.txt", "upper\n"},
		{"/etc/gone.txt", ""},
		{"/opq/a.txt", ""},
		{"/opq/b.txt", "new\n"},
		{"/usr/lib/hard", "linked\n"},
		{"/lib/orig", "linked\n"},
		{"/etc/hostname", "sandbox\n"},
		{"/etc/environment", "PATH=\"/usr/local/bin:/usr/bin:/bin\"\nFOO=\"bar\"\n"},
	}
	for _, f := range files {
		body, ok := catFile(t, got.Path, f.path)
		if f.want == "" {
			if ok {
				t.Errorf("%s present (%q), want it whited out", f.path, body)
			}
			continue
		}
		if body != f.want {
			t.Errorf("%s = %q, want %q", f.path, body, f.want)
		}
	}
	if passwd, _ := catFile(t, got.Path, "/etc/passwd"); !strings.Contains(passwd, "\nsandbox:x:1000:1000:") {
		t.Errorf("/etc/passwd has no sandbox user:\n%s", passwd)
	}
	stats := []struct{ path, want string }{
		{"/usr/bin/suid", "Mode:  0755"},
		{"/home/sandbox", "User:  1000   Group:  1000"},
		{"/tmp", "Mode:  01777"},
		{"/usr/lib/orig", "Links: 2"},
		{"/dev/null", "not found"},
	}
	for _, s := range stats {
		if out := debugfs(t, got.Path, "stat "+s.path); !strings.Contains(out, s.want) {
			t.Errorf("stat %s lacks %q:\n%s", s.path, s.want, out)
		}
	}

	// The same digest under the same name is served from the cache.
	again, err := Import(context.Background(), ImportConfig{CacheDir: cacheDir}, ref, "flat")
	if err != nil || again != got {
		t.Errorf("second Import = %+v, %v; want the cached %+v", again, err, got)
	}
	if found, err := Find(cacheDir, "flat"); err != nil || found != got {
		t.Errorf("Find(flat) = %+v, %v", found, err)
	}
}

// TestImportWritesThroughLowerSymlinks: a higher layer that names a path below a lower layer's
// symlink (as tools that build layers from tarballs do) lands in the link's target, as it does in
// the container.
func TestImportWritesThroughLowerSymlinks(t *testing.T) {
	requireE2fs(t)
	lower := layerOf(t,
		entry{name: "usr/lib/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "usr/lib/old.so", body: "old\n"},
		entry{name: "usr/lib/keep.so", body: "keep\n"},
		entry{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		entry{name: "run/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "var/run", typ: tar.TypeSymlink, link: "/run"},
	)
	upper := layerOf(t,
		entry{name: "lib/new.so", body: "new\n"},
		entry{name: "lib/old.so", body: "replaced\n"},
		entry{name: "lib/sub/deep.so", body: "deep\n"},
		entry{name: "var/run/app.pid", body: "42\n"},
	)
	got, err := Import(context.Background(), ImportConfig{CacheDir: t.TempDir()}, testRegistry(t, imageOf(t, nil, lower, upper)), "merged")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/usr/lib/new.so":      "new\n",
		"/usr/lib/old.so":      "replaced\n",
		"/usr/lib/keep.so":     "keep\n",
		"/usr/lib/sub/deep.so": "deep\n",
		"/run/app.pid":         "42\n",
	} {
		if body, _ := catFile(t, got.Path, p); body != want {
			t.Errorf("%s = %q, want %q", p, body, want)
		}
	}
	for p, want := range map[string]string{"/lib": `Fast link dest: "usr/lib"`, "/var/run": `Fast link dest: "/run"`} {
		if out := debugfs(t, got.Path, "stat "+p); !strings.Contains(out, want) {
			t.Errorf("stat %s lacks %q:\n%s", p, want, out)
		}
	}
}

func TestImportLocalLayout(t *testing.T) {
	requireE2fs(t)
	img := imageOf(t, nil, layerOf(t, entry{name: "hello.txt", body: "from a layout\n"}))
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	got, err := Import(context.Background(), ImportConfig{CacheDir: t.TempDir()}, dir, "local")
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := catFile(t, got.Path, "/hello.txt"); body != "from a layout\n" {
		t.Errorf("/hello.txt = %q", body)
	}
	if !strings.HasPrefix(got.Source, "oci-layout:") {
		t.Errorf("Source = %q", got.Source)
	}
}

func TestImportRefusesEscapes(t *testing.T) {
	requireE2fs(t)
	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []entry
		wantErr bool
	}{
		{"dotdot", []entry{{name: "../../../../../../" + outside + "/pwned.txt", body: "x"}}, true},
		{"absolute symlink", []entry{ // the flattener hides entries below a non-directory
			{name: "esc", typ: tar.TypeSymlink, link: outside},
			{name: "esc/pwned.txt", body: "x"},
		}, false},
		{"relative symlink", []entry{ // dropped by the flattener, so esc becomes a plain directory
			{name: "esc", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside},
			{name: "esc/pwned.txt", body: "x"},
		}, false},
		{"hard link", []entry{{name: "hl", typ: tar.TypeLink, link: "../../../../etc/shadow"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := testRegistry(t, imageOf(t, nil, layerOf(t, tt.entries...)))
			cacheDir := t.TempDir()
			_, err := Import(context.Background(), ImportConfig{CacheDir: cacheDir}, ref, "evil")
			if (err != nil) != tt.wantErr {
				t.Errorf("Import error = %v, want error %v", err, tt.wantErr)
			}
			if _, err := os.Lstat(filepath.Join(outside, "pwned.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a file was written outside the root: %v", err)
			}
			if tt.wantErr {
				if _, err := Find(cacheDir, "evil"); !errors.Is(err, ErrNotBuilt) {
					t.Errorf("a refused import left an image: %v", err)
				}
			}
		})
	}
}

// TestUntarConfined feeds untar tars the flattener would not pass on: it must refuse them itself.
func TestUntarConfined(t *testing.T) {
	requireRoot(t)
	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []entry
		wantErr error
	}{
		{"dotdot", []entry{{name: "a/../../x", body: "x"}}, ErrUnsafePath},
		{"hard link out", []entry{{name: "ok", typ: tar.TypeLink, link: "../x"}}, ErrUnsafePath},
		{"through absolute symlink", []entry{
			{name: "esc", typ: tar.TypeSymlink, link: outside},
			{name: "esc/pwned.txt", body: "x"},
		}, nil},
		{"through relative symlink", []entry{
			{name: "esc", typ: tar.TypeSymlink, link: "../../../../../../../../.." + outside},
			{name: "esc/pwned.txt", body: "x"},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := untar(context.Background(), bytes.NewReader(tarBytes(t, tt.entries)), filepath.Join(t.TempDir(), "root"))
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("untar: %v, want %v", err, cmp.Or(tt.wantErr, errors.New("an error")))
			}
			if _, err := os.Lstat(filepath.Join(outside, "pwned.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a file was written outside the root: %v", err)
			}
		})
	}
}

func TestImportRefusesBuiltinName(t *testing.T) {
	if _, err := Import(context.Background(), ImportConfig{CacheDir: t.TempDir()}, "example.com/x:1", "python"); err == nil {
		t.Error("import under a built-in name succeeded")
	}
}

func FuzzEntryName(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/etc/passwd", "a/../../b", ".", "./a/./b/..", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, n string) {
		got, err := entryName(n)
		if err != nil {
			return
		}
		if got == ".." || strings.HasPrefix(got, "../") || strings.HasPrefix(got, "/") {
			t.Fatalf("entryName(%q) = %q escapes", n, got)
		}
		if filepath.Clean(filepath.Join("/root", got)) != "/root" && !strings.HasPrefix(filepath.Join("/root", got), "/root/") {
			t.Fatalf("entryName(%q) = %q resolves outside", n, got)
		}
	})
}

// TestImportConcurrent runs two imports of one image into one cache at once: the lock makes one
// wait for the other, and both get the same complete image.
func TestImportConcurrent(t *testing.T) {
	requireE2fs(t)
	ref := testRegistry(t, imageOf(t, nil, layerOf(t, entry{name: "x.txt", body: "x\n"})))
	cacheDir := t.TempDir()
	type result struct {
		img Image
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			img, err := Import(context.Background(), ImportConfig{CacheDir: cacheDir}, ref, "twice")
			results <- result{img, err}
		}()
	}
	a, b := <-results, <-results
	if a.err != nil || b.err != nil || a.img != b.img {
		t.Fatalf("concurrent imports: %+v / %+v", a, b)
	}
	if body, _ := catFile(t, a.img.Path, "/x.txt"); body != "x\n" {
		t.Errorf("/x.txt = %q", body)
	}
	if left, _ := filepath.Glob(filepath.Join(imageDir(cacheDir), "tmp", "*")); len(left) > 0 {
		t.Errorf("work directories left behind: %v", left)
	}
}

// BenchmarkImport flattens a random 3-layer, 48 MiB image from the in-process registry into an
// ext4 image (a fresh cache each time).
func BenchmarkImport(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	img, err := random.Image(16<<20, 3)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/bench/random:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Import(context.Background(), ImportConfig{CacheDir: b.TempDir()}, ref, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzUntar feeds arbitrary tars to untar: whatever it accepts or refuses, nothing may appear
// outside the root.
func FuzzUntar(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root (chown)")
	}
	seeds := [][]entry{
		{{name: "a/b.txt", body: "x"}},
		{{name: "esc", typ: tar.TypeSymlink, link: "/"}, {name: "esc/x", body: "x"}},
		{{name: "d/f", body: "x"}, {name: "d", typ: tar.TypeSymlink, link: "../.."}},
		{{name: "h", typ: tar.TypeLink, link: "a/b.txt"}, {name: "a/b.txt", body: "y"}},
	}
	for _, s := range seeds {
		f.Add(tarBytes(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		outside := filepath.Join(dir, "outside")
		if err := os.MkdirAll(filepath.Join(outside, "in"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, _ = untar(context.Background(), bytes.NewReader(data), filepath.Join(outside, "in", "root"))
		entries, err := os.ReadDir(outside)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "in" {
				t.Fatalf("untar wrote %s outside the root", e.Name())
			}
		}
		in, _ := os.ReadDir(filepath.Join(outside, "in"))
		if len(in) > 1 {
			t.Fatalf("untar wrote beside the root: %v", in)
		}
	})
}
