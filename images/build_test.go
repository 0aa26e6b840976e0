// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/internal/progress"
)

// testCacheDir is the cache the CLI uses: $WAGGLE_DATA_DIR/cache, else the default.
func testCacheDir() string {
	if d := os.Getenv("WAGGLE_DATA_DIR"); d != "" {
		return filepath.Join(d, "cache")
	}
	return DefaultCacheDir
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// requireImage returns the cached built-in image, building it first when
// WAGGLE_IMAGES_TEST_BUILD=1. A missing image skips the test, or fails it when
// WAGGLE_REQUIRE_VM=1.
func requireImage(t *testing.T, name string) Image {
	t.Helper()
	cacheDir := testCacheDir()
	if os.Getenv("WAGGLE_IMAGES_TEST_BUILD") == "1" {
		cfg := BuildConfig{CacheDir: cacheDir, Mirror: cmp.Or(os.Getenv("WAGGLE_DEBIAN_MIRROR"), DefaultMirror), Progress: progress.New(testWriter{t})}
		if err := Build(context.Background(), cfg, name); err != nil {
			t.Fatal(err)
		}
	}
	img, err := Find(cacheDir, name)
	if err != nil {
		if os.Getenv("WAGGLE_REQUIRE_VM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return img
}

// TestBuiltImages checks every built-in image in the cache: the layout every image promises
// (inspected with debugfs) and, run as the sandbox user in a copy of the tree, what its
// runtime is for.
func TestBuiltImages(t *testing.T) {
	checks := map[string][]struct{ script, want string }{
		"base": {
			{"ls /etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"},
			{"cat /etc/apt/sources.list", "deb " + wire.AptMirrorURL + " " + Suite + " main"},
		},
		"python": {
			{`python -c 'import sys; print(sys.prefix)'`, "/opt/venv"},
			{"pip --version", "/opt/venv/lib/python3"},
			{"touch /opt/venv/lib/python3.11/site-packages/x && echo writable", "writable"},
			{"pip config list", "global.index-url='" + wire.PipIndexURL + "'"},
		},
		"node": {
			{`node -e 'console.log(6*7)'`, "42"},
			{"npm config get prefix", "/home/sandbox/.npm-global"},
			{"touch /home/sandbox/.npm-global/lib/x && echo writable", "writable"},
			{"npm config get registry", wire.NpmRegistryURL},
		},
		"shell": {
			{`echo '{"a":[1,2]}' | jq -c .a`, "[1,2]"},
			{"bash -c 'echo $BASH_VERSION'", "5."},
			{"curl --version", "curl 7"},
			{"find /etc -maxdepth 0", "/etc"},
			{"cat /etc/apt/sources.list", "deb " + wire.AptMirrorURL + " " + Suite + " main"},
		},
	}
	for _, def := range Definitions() {
		t.Run(def.Name, func(t *testing.T) {
			requireE2fs(t)
			img := requireImage(t, def.Name)
			t.Parallel() // after a build, which must not run beside another
			stats := []struct{ path, want string }{
				{"/tmp", "Mode:  01777"},
				{"/home/sandbox", "User:  1000   Group:  1000"},
				{"/etc/resolv.conf", "not found"},
			}
			for _, s := range stats {
				if out := debugfs(t, img.Path, "stat "+s.path); !strings.Contains(out, s.want) {
					t.Errorf("stat %s lacks %q:\n%s", s.path, s.want, out)
				}
			}
			for _, suid := range []string{"/usr/bin/su", "/usr/bin/mount", "/usr/bin/passwd", "/usr/bin/chsh", "/usr/bin/newgrp", "/usr/sbin/unix_chkpwd"} {
				if out := debugfs(t, img.Path, "stat "+suid); !strings.Contains(out, "not found") && !strings.Contains(out, "Mode:  0755") {
					t.Errorf("%s is still privileged:\n%s", suid, out)
				}
			}
			if h, _ := catFile(t, img.Path, "/etc/hostname"); h != "sandbox\n" {
				t.Errorf("/etc/hostname = %q", h)
			}
			if p, _ := catFile(t, img.Path, "/etc/passwd"); !strings.Contains(p, "\nsandbox:x:1000:1000:") {
				t.Errorf("no sandbox user in /etc/passwd:\n%s", p)
			}
			if d, ok := catFile(t, img.Path, "/usr/share/doc/coreutils/copyright"); ok {
				t.Errorf("docs kept: %q", d[:min(len(d), 40)])
			}

			tree := filepath.Join(t.TempDir(), "root")
			if err := os.Mkdir(tree, 0o755); err != nil {
				t.Fatal(err)
			}
			debugfs(t, img.Path, "rdump / "+tree)
			env := readEnvironment(t, filepath.Join(tree, "etc/environment"))
			for _, c := range append(checks[def.Name], struct{ script, want string }{"id -un; touch /home/sandbox/x /tmp/x && echo ok", "sandbox\nok"}) {
				cmd := exec.Command("/bin/sh", "-c", c.script)
				cmd.Env = append(slices.Clip(env), "HOME=/home/sandbox", "USER=sandbox")
				cmd.Dir = "/"
				cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: tree, Credential: &syscall.Credential{Uid: sandboxUID, Gid: sandboxUID}}
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), c.want) {
					t.Errorf("as sandbox: %s: %v\n%s\nwant %q", c.script, err, out, c.want)
				}
			}
			if out, err := exec.Command("chroot", tree, "touch", "/etc/x").CombinedOutput(); err != nil {
				t.Fatalf("touch as root in the copy: %v %s", err, out)
			}
		})
	}
}

// readEnvironment parses /etc/environment as the guest init does: KEY="VALUE" lines.
func readEnvironment(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		env = append(env, k+"="+strings.Trim(v, `"`))
	}
	return env
}

func TestDebootstrapSummary(t *testing.T) {
	log := `I: Retrieving InRelease
I: Checking Release signature
I: Retrieving Packages
I: Resolving dependencies of required packages...
I: Retrieving adduser 3.134
I: Validating adduser 3.134
I: Retrieving apt 2.6.1
I: Extracting adduser...
I: Extracting apt...
W: something odd
I: Installing core packages...
I: Unpacking tar...
I: Configuring the base system...
I: Base system installed successfully.`
	var out strings.Builder
	s := newDebootstrapSummary(progress.New(&out), "bootstrap")
	for l := range strings.Lines(log) {
		s.line(strings.TrimSuffix(l, "\n"))
	}
	var got []string
	for l := range strings.Lines(out.String()) {
		if i := strings.LastIndex(l, ", "); i >= 0 {
			l = l[:i] // drop the elapsed time
		}
		_, l, _ = strings.Cut(l, "s [") // and the time since the start
		l = "[" + l
		got = append(got, strings.TrimSuffix(l, "\n"))
	}
	want := []string{
		"[bootstrap] debootstrap: resolving dependencies of required packages (0 packages retrieved",
		"[bootstrap] debootstrap: retrieving packages (1 packages retrieved",
		"[bootstrap] debootstrap: extracting packages (2 packages retrieved",
		"[bootstrap] debootstrap: W: something odd",
		"[bootstrap] debootstrap: installing core packages (2 packages retrieved",
		"[bootstrap] debootstrap: configuring the base system (2 packages retrieved",
		"[bootstrap] debootstrap: base system installed successfully. (2 packages retrieved",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// BenchmarkBuild builds every built-in image from scratch (debootstrap included) into a fresh
// cache and reports each image's build time and size. It downloads ~100 MB from the Debian
// mirror, so it runs only with WAGGLE_IMAGES_BENCH_BUILD=1.
func BenchmarkBuild(b *testing.B) {
	if os.Getenv("WAGGLE_IMAGES_BENCH_BUILD") != "1" {
		b.Skip("set WAGGLE_IMAGES_BENCH_BUILD=1 to build all images from scratch")
	}
	mirror := cmp.Or(os.Getenv("WAGGLE_DEBIAN_MIRROR"), DefaultMirror)
	for b.Loop() {
		cacheDir := b.TempDir()
		if err := Build(context.Background(), BuildConfig{CacheDir: cacheDir, Mirror: mirror, Progress: progress.New(os.Stderr)}, Names()...); err != nil {
			b.Fatal(err)
		}
		for _, name := range Names() {
			img, err := Find(cacheDir, name)
			if err != nil {
				b.Fatal(err)
			}
			var m metadata
			raw, err := os.ReadFile(metaPath(cacheDir, img.Name, img.Hash))
			if err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(m.BuildSeconds, name+"-s")
			b.ReportMetric(float64(m.ContentBytes)/(1<<20), name+"-MiB")
		}
	}
}
