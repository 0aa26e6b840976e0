// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package pkgtest serves small package upstreams for tests, built in memory: a PEP 503/691
// index with one wheel, an npm registry with one tarball and a Debian repository with one
// .deb (signed with a key made for the test, when gpg is installed), and a package proxy in
// front of them (Serve). Each package is called
// waggle-hello and, once installed, greets: `import waggle_hello; waggle_hello.greet()`,
// `require("waggle-hello").greet()`, or the command `waggle-hello`.
package pkgtest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1" //nolint:gosec // npm's dist.shasum
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// Serve runs a package proxy with cfg (a fresh cache of 64 MiB unless it says otherwise) on a
// unix socket until the test ends, and returns it with the socket's path.
func Serve(t testing.TB, cfg pkgproxy.Config) (*pkgproxy.Proxy, string) {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 64 << 20
	}
	p, err := pkgproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "wpp") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "packages.sock")
	ln, err := pkgproxy.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("package proxy: %v", err)
		}
		p.Close()
	})
	return p, socket
}

// Config points a package proxy at the upstreams.
func (u *Upstreams) Config() pkgproxy.Config {
	cfg := pkgproxy.DefaultConfig()
	cfg.PyPIIndex, cfg.NpmRegistry, cfg.AptMirror = u.PyPI, u.Npm, u.Apt
	return cfg
}

// Names and contents of the test packages.
const (
	Name     = "waggle-hello"
	Version  = "1.0.0"
	Greeting = "hello from waggle-hello"
	Suite    = "bookworm"

	WheelFile   = "waggle_hello-1.0.0-py3-none-any.whl"
	TarballFile = "waggle-hello-1.0.0.tgz"
	DebFile     = "waggle-hello_1.0.0_all.deb"
	debPool     = "pool/main/w/waggle-hello/" + DebFile
)

// Upstreams is a running test upstream.
type Upstreams struct {
	// PyPI, Npm and Apt are the upstream URLs, for pkgproxy.Config.
	PyPI, Npm, Apt string
	// Addr is the listener's host:port.
	Addr string
	// AptKeys is the armored public key the repository is signed with (nil if unsigned).
	AptKeys []byte
	// Wheel, Tarball and Deb are the package files.
	Wheel, Tarball, Deb []byte

	srv  *http.Server
	base string
	mu   sync.Mutex
	hits map[string]int
	// corrupt makes the upstream serve the package files with a flipped last byte.
	corrupt bool
}

// Options say how to start the upstreams.
type Options struct {
	// Addr is the listen address; empty means 127.0.0.1:0.
	Addr string
	// Sign signs the Debian repository's Release with a new key; the test is skipped (failed
	// when require is set) if gpg is missing.
	Sign    bool
	Require bool
}

// Start serves the upstreams until the test ends.
func Start(t testing.TB, o Options) *Upstreams {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstreams{Addr: ln.Addr().String(), hits: map[string]int{}}
	u.base = "http://" + u.Addr
	u.PyPI, u.Npm, u.Apt = u.base+"/simple", u.base+"/npm", u.base+"/debian"
	if u.Wheel, err = wheel(); err != nil {
		t.Fatal(err)
	}
	if u.Tarball, err = tarball(); err != nil {
		t.Fatal(err)
	}
	if u.Deb, err = deb(); err != nil {
		t.Fatal(err)
	}
	files, err := u.repository(t, o)
	if err != nil {
		t.Fatal(err)
	}
	u.srv = &http.Server{Handler: u.handler(files), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() { u.srv.Close() })
	return u
}

// Close stops serving (as an upstream that went down).
func (u *Upstreams) Close() { u.srv.Close() }

// Hits is the number of requests for path (e.g. "/simple/waggle-hello/") so far.
func (u *Upstreams) Hits(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[path]
}

// SetCorrupt makes the upstream serve corrupt package files (true) or good ones.
func (u *Upstreams) SetCorrupt(on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.corrupt = on
}

// Paths of the package files on the upstream.
const (
	WheelPath   = "/files/" + WheelFile
	TarballPath = "/npm/" + Name + "/-/" + TarballFile
	DebPath     = "/debian/" + debPool
)

func (u *Upstreams) handler(files map[string][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.hits[r.URL.Path]++
		corrupt := u.corrupt
		u.mu.Unlock()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read only", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case "/simple/" + Name + "/":
			u.serveProject(w, r)
			return
		case "/npm/" + Name:
			u.serveNpmDocument(w)
			return
		}
		data, ok := files[r.URL.Path]
		if !ok {
			if strings.HasPrefix(r.URL.Path, "/npm/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"error":"Not found"}`)
				return
			}
			http.NotFound(w, r)
			return
		}
		if corrupt && (r.URL.Path == WheelPath || r.URL.Path == TarballPath || r.URL.Path == DebPath) {
			data = append([]byte(nil), data...)
			data[len(data)-1] ^= 0xff
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	})
}

// serveProject is the wheel's project page: PEP 691 JSON when asked for, else PEP 503 HTML
// (with a relative link, as devpi and PyPI's own mirrors write them).
func (u *Upstreams) serveProject(w http.ResponseWriter, r *http.Request) {
	sum := sha256.Sum256(u.Wheel)
	if strings.Contains(r.Header.Get("Accept"), "application/vnd.pypi.simple.v1+json") {
		w.Header().Set("Content-Type", "application/vnd.pypi.simple.v1+json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"meta": map[string]string{"api-version": "1.0"},
			"name": Name,
			"files": []map[string]any{{
				"filename": WheelFile, "url": "../../files/" + WheelFile,
				"hashes": map[string]string{"sha256": hex.EncodeToString(sum[:])}, "requires-python": ">=3.7",
			}},
		})
		return
	}
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><body><h1>Links for %s</h1>\n"+
		"<a href=\"../../files/%s#sha256=%x\" data-requires-python=\"&gt;=3.7\">%s</a><br/>\n</body></html>\n",
		Name, WheelFile, sum, WheelFile)
}

func (u *Upstreams) serveNpmDocument(w http.ResponseWriter) {
	s512 := sha512.Sum512(u.Tarball)
	s1 := sha1.Sum(u.Tarball) //nolint:gosec // npm's dist.shasum
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"name":      Name,
		"dist-tags": map[string]string{"latest": Version},
		"versions": map[string]any{Version: map[string]any{
			"name": Name, "version": Version, "main": "index.js",
			"dist": map[string]string{
				"tarball":   u.base + TarballPath,
				"integrity": "sha512-" + base64.StdEncoding.EncodeToString(s512[:]),
				"shasum":    hex.EncodeToString(s1[:]),
			},
		}},
	})
}

// wheel builds the wheel: a module with greet() and its dist-info.
func wheel() ([]byte, error) {
	info := "waggle_hello-1.0.0.dist-info/"
	files := []struct{ name, body string }{
		{"waggle_hello/__init__.py", "def greet():\n    return " + fmt.Sprintf("%q", Greeting) + "\n"},
		{info + "METADATA", "Metadata-Version: 2.1\nName: waggle-hello\nVersion: 1.0.0\nSummary: waggle test package\n"},
		{info + "WHEEL", "Wheel-Version: 1.0\nGenerator: waggle-pkgtest\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := z.Create(f.name)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	fmt.Fprintf(&record, "%sRECORD,,\n", info)
	w, err := z.Create(info + "RECORD")
	if err != nil {
		return nil, err
	}
	if _, err := w.Write([]byte(record.String())); err != nil {
		return nil, err
	}
	err = z.Close()
	return buf.Bytes(), err
}

// tarFile is one member of a tar archive.
type tarFile struct {
	name string
	mode int64
	body string // a directory if name ends in "/"
}

// targz builds a gzipped tar archive.
func targz(files []tarFile) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	mtime := time.Unix(1_700_000_000, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: mtime, Uname: "root", Gname: "root",
			Typeflag: tar.TypeReg, Format: tar.FormatGNU}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	err := zw.Close()
	return buf.Bytes(), err
}

// tarball builds the npm package: package.json and index.js below package/.
func tarball() ([]byte, error) {
	return targz([]tarFile{
		{"package/package.json", 0o644, fmt.Sprintf(`{"name": %q, "version": %q, "main": "index.js"}`, Name, Version) + "\n"},
		{"package/index.js", 0o644, fmt.Sprintf("module.exports = { greet: () => %q };\n", Greeting)},
	})
}

// deb builds the Debian package: /usr/bin/waggle-hello, a script that greets.
func deb() ([]byte, error) {
	control, err := targz([]tarFile{
		{"./", 0o755, ""},
		{"./control", 0o644, "Package: " + Name + "\nVersion: " + Version + "\nArchitecture: all\n" +
			"Maintainer: waggle tests <tests@waggle.invalid>\nInstalled-Size: 1\nSection: misc\nPriority: optional\n" +
			"Description: waggle test package\n prints a greeting\n"},
	})
	if err != nil {
		return nil, err
	}
	data, err := targz([]tarFile{
		{"./", 0o755, ""}, {"./usr/", 0o755, ""}, {"./usr/bin/", 0o755, ""},
		{"./usr/bin/" + Name, 0o755, "#!/bin/sh\necho '" + Greeting + "'\n"},
	})
	if err != nil {
		return nil, err
	}
	// An ar archive: the format version, then the control and data archives.
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		body []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", control}, {"data.tar.gz", data}} {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 1_700_000_000, 0, 0, "100644", len(m.body))
		buf.Write(m.body)
		if len(m.body)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), nil
}

// repository builds the files of the three upstreams below their paths, apt's Release signed
// when o.Sign.
func (u *Upstreams) repository(t testing.TB, o Options) (map[string][]byte, error) {
	debSum := sha256.Sum256(u.Deb)
	packages := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: waggle tests <tests@waggle.invalid>\n"+
		"Installed-Size: 1\nFilename: %s\nSize: %d\nSHA256: %x\nSection: misc\nPriority: optional\n"+
		"Description: waggle test package\n", Name, Version, debPool, len(u.Deb), debSum)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write([]byte(packages)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	dists := "/debian/dists/" + Suite + "/"
	files := map[string][]byte{
		WheelPath: u.Wheel, TarballPath: u.Tarball, DebPath: u.Deb,
	}
	var release strings.Builder
	fmt.Fprintf(&release, "Origin: waggle-test\nLabel: waggle-test\nSuite: %s\nCodename: %s\nDate: %s\n"+
		"Architectures: amd64\nComponents: main\nDescription: waggle test repository\nAcquire-By-Hash: yes\nSHA256:\n",
		Suite, Suite, time.Now().Add(-time.Hour).UTC().Format(time.RFC1123))
	for _, idx := range []struct {
		name string
		data []byte
	}{{"main/binary-amd64/Packages", []byte(packages)}, {"main/binary-amd64/Packages.gz", gz.Bytes()}} {
		sum := sha256.Sum256(idx.data)
		fmt.Fprintf(&release, " %x %d %s\n", sum, len(idx.data), idx.name)
		files[dists+idx.name] = idx.data
		files[dists+filepath.Dir(idx.name)+"/by-hash/SHA256/"+hex.EncodeToString(sum[:])] = idx.data
	}
	files[dists+"Release"] = []byte(release.String())
	if o.Sign {
		inRelease, sig, key, err := sign(t, o.Require, []byte(release.String()))
		if err != nil {
			return nil, err
		}
		files[dists+"InRelease"], files[dists+"Release.gpg"], u.AptKeys = inRelease, sig, key
	}
	return files, nil
}

// sign makes a signing key in a throw-away gpg home and signs release with it: the InRelease
// file (clear-signed), Release.gpg (detached) and the armored public key.
func sign(t testing.TB, require bool, release []byte) (inRelease, detached, key []byte, err error) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		if require {
			t.Fatalf("signing the test apt repository needs gpg (apt-get install gnupg): %v", err)
		}
		t.Skipf("signing the test apt repository needs gpg: %v", err)
	}
	// A short home: gpg-agent's socket path must stay under 108 bytes.
	home, err := os.MkdirTemp("", "wgpg")
	if err != nil {
		return nil, nil, nil, err
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	gpg := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("gpg %s: %w: %s", strings.Join(args, " "), err, errb.String())
		}
		return out.Bytes(), nil
	}
	uid := "waggle test repository <tests@waggle.invalid>"
	if _, err := gpg(nil, "--quick-generate-key", uid, "ed25519", "sign", "never"); err != nil {
		return nil, nil, nil, err
	}
	if key, err = gpg(nil, "--armor", "--export", uid); err != nil {
		return nil, nil, nil, err
	}
	if inRelease, err = gpg(release, "--digest-algo", "SHA256", "--clearsign"); err != nil {
		return nil, nil, nil, err
	}
	if detached, err = gpg(release, "--digest-algo", "SHA256", "--armor", "--detach-sign"); err != nil {
		return nil, nil, nil, err
	}
	return inRelease, detached, key, nil
}
