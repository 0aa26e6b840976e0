// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy/pkgtest"
)

// testProxy is a Proxy serving on a unix socket, as the shims reach it.
type testProxy struct {
	p      *pkgproxy.Proxy
	socket string
}

func startProxy(t testing.TB, cfg pkgproxy.Config) *testProxy {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, socket := pkgtest.Serve(t, cfg)
	return &testProxy{p: p, socket: socket}
}

// client is a guest of VM vm: every connection goes through DialVM, as a shim relays it.
func (tp *testProxy) client(vm string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return pkgproxy.DialVM(ctx, tp.socket, vm)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches path from the proxy as VM vm.
func (tp *testProxy) get(t *testing.T, vm, path, accept string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+wire.PackageProxyHost+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := tp.client(vm).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, body
}

func (tp *testProxy) mustGet(t *testing.T, vm, path, accept string) []byte {
	t.Helper()
	code, _, body := tp.get(t, vm, path, accept)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var wheelLinkRE = regexp.MustCompile(`href="(/pypi/files/[0-9a-f]{16}/` + regexp.QuoteMeta(pkgtest.WheelFile) + `)#sha256=([0-9a-f]{64})"`)

func TestPyPI(t *testing.T) {
	up := pkgtest.Start(t, pkgtest.Options{})
	tp := startProxy(t, up.Config())
	rec := tp.p.Record("vm1")
	other := tp.p.Record("vm2")

	page := tp.mustGet(t, "vm1", wire.PyPIPath+"waggle-hello/", "text/html")
	m := wheelLinkRE.FindSubmatch(page)
	if m == nil || string(m[2]) != sha(up.Wheel) {
		t.Fatalf("the HTML page's link is not rewritten with its hash:\n%s", page)
	}
	if !bytes.Contains(page, []byte(`data-requires-python="&gt;=3.7"`)) {
		t.Errorf("the link's other attributes were lost:\n%s", page)
	}
	if got := tp.mustGet(t, "vm1", string(m[1]), ""); !bytes.Equal(got, up.Wheel) {
		t.Fatal("the wheel differs from the upstream's")
	}
	if got := tp.mustGet(t, "vm1", string(m[1]), ""); !bytes.Equal(got, up.Wheel) {
		t.Fatal("the cached wheel differs from the upstream's")
	}
	if n := up.Hits(pkgtest.WheelPath); n != 1 {
		t.Errorf("the upstream served the wheel %d times, want 1 (then the cache)", n)
	}

	// PEP 691: the same file, by the same proxy path.
	var doc struct {
		Name  string `json:"name"`
		Files []struct {
			URL    string            `json:"url"`
			Hashes map[string]string `json:"hashes"`
		} `json:"files"`
	}
	if err := json.Unmarshal(tp.mustGet(t, "vm1", wire.PyPIPath+"waggle-hello/", "application/vnd.pypi.simple.v1+json"), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Files) != 1 || doc.Files[0].URL != string(m[1]) || doc.Files[0].Hashes["sha256"] != sha(up.Wheel) {
		t.Errorf("PEP 691 page: %+v", doc)
	}

	files := rec.Stop().Files
	want := events.PackageFile{Manager: "pip", Name: "waggle-hello", Version: "1.0.0", File: pkgtest.WheelFile,
		SHA256: sha(up.Wheel), Size: int64(len(up.Wheel))}
	if len(files) != 2 {
		t.Fatalf("recorded %+v, want the wheel twice", files)
	}
	cached := want
	cached.Cached = true
	if files[0] != want || files[1] != cached {
		t.Errorf("recorded %+v\nwant %+v then %+v", files, want, cached)
	}
	if got := other.Stop(); len(got.Files) != 0 {
		t.Errorf("another VM's recording got %+v", got)
	}

	// PEP 503 names: any spelling leads to the normalized page.
	code, h, _ := tp.get(t, "vm1", wire.PyPIPath+"Waggle_Hello/", "")
	if code != http.StatusMovedPermanently || h.Get("Location") != wire.PyPIPath+"waggle-hello/" {
		t.Errorf("unnormalized name: %d %s", code, h.Get("Location"))
	}
	if code, _, body := tp.get(t, "vm1", wire.PyPIPath+"no-such-project/", ""); code != http.StatusNotFound {
		t.Errorf("unknown project: %d %s", code, body)
	}
}

func TestNpm(t *testing.T) {
	up := pkgtest.Start(t, pkgtest.Options{})
	tp := startProxy(t, up.Config())
	var doc struct {
		Versions map[string]struct {
			Dist struct{ Tarball, Integrity string } `json:"dist"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(tp.mustGet(t, "vm1", wire.NpmPath+pkgtest.Name, "application/vnd.npm.install-v1+json"), &doc); err != nil {
		t.Fatal(err)
	}
	tarball := doc.Versions[pkgtest.Version].Dist.Tarball
	if want := wire.NpmRegistryURL + pkgtest.Name + "/-/" + pkgtest.TarballFile; tarball != want {
		t.Fatalf("tarball URL %q, want %q", tarball, want)
	}
	rec := tp.p.Record("vm1")
	path := strings.TrimPrefix(tarball, "http://"+wire.PackageProxyHost)
	if got := tp.mustGet(t, "vm1", path, ""); !bytes.Equal(got, up.Tarball) {
		t.Fatal("the tarball differs from the upstream's")
	}
	if files := rec.Stop().Files; len(files) != 1 || files[0].Name != pkgtest.Name || files[0].Version != pkgtest.Version ||
		files[0].SHA256 != sha(up.Tarball) || files[0].Manager != "npm" {
		t.Errorf("recorded %+v", files)
	}
	if code, _, body := tp.get(t, "vm1", wire.NpmPath+"no-such-package", ""); code != http.StatusNotFound {
		t.Errorf("unknown package: %d %s", code, body)
	}
}

func TestApt(t *testing.T) {
	up := pkgtest.Start(t, pkgtest.Options{})
	tp := startProxy(t, up.Config())
	dists := wire.AptPath + "/dists/" + pkgtest.Suite + "/"
	release := tp.mustGet(t, "vm1", dists+"Release", "")
	var packagesGz string
	for line := range strings.SplitSeq(string(release), "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.HasSuffix(f[2], "Packages.gz") {
			packagesGz = dists + "main/binary-amd64/by-hash/SHA256/" + f[0]
		}
	}
	if packagesGz == "" {
		t.Fatalf("no Packages.gz in the Release:\n%s", release)
	}
	tp.mustGet(t, "vm1", packagesGz, "")
	rec := tp.p.Record("vm1")
	deb := tp.mustGet(t, "vm1", wire.AptPath+strings.TrimPrefix(pkgtest.DebPath, "/debian"), "")
	if !bytes.Equal(deb, up.Deb) {
		t.Fatal("the .deb differs from the upstream's")
	}
	files := rec.Stop().Files
	if len(files) == 0 || files[0] != (events.PackageFile{Manager: "apt", Name: pkgtest.Name, Version: pkgtest.Version,
		File: pkgtest.DebFile, SHA256: sha(up.Deb), Size: int64(len(up.Deb))}) {
		t.Errorf("recorded %+v", files)
	}
}

// TestDigestMismatch serves files that differ from what their index said: the guest gets no
// whole body, nothing is cached, and once the upstream is right again the file comes.
func TestDigestMismatch(t *testing.T) {
	up := pkgtest.Start(t, pkgtest.Options{})
	tp := startProxy(t, up.Config())
	page := tp.mustGet(t, "vm1", wire.PyPIPath+"waggle-hello/", "")
	m := wheelLinkRE.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no link:\n%s", page)
	}
	tp.mustGet(t, "vm1", wire.NpmPath+pkgtest.Name, "")
	tp.mustGet(t, "vm1", wire.AptPath+"/dists/"+pkgtest.Suite+"/main/binary-amd64/Packages", "")
	up.SetCorrupt(true)
	rec := tp.p.Record("vm1")
	for _, path := range []string{string(m[1]), wire.NpmPath + pkgtest.Name + "/-/" + pkgtest.TarballFile,
		wire.AptPath + strings.TrimPrefix(pkgtest.DebPath, "/debian")} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+wire.PackageProxyHost+path, nil)
		resp, err := tp.client("vm1").Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				t.Errorf("%s: a corrupt file was served whole", path)
			}
		}
	}
	got := rec.Stop()
	if len(got.Files) != 0 {
		t.Errorf("corrupt files recorded as fetched: %+v", got.Files)
	}
	if len(got.Failures) != 3 || !strings.Contains(got.Failures[0], "does not match the digest") {
		t.Errorf("failures recorded: %q, want the 3 digest mismatches", got.Failures)
	}
	up.SetCorrupt(false)
	if got := tp.mustGet(t, "vm1", string(m[1]), ""); !bytes.Equal(got, up.Wheel) {
		t.Error("after the corrupt fetch, the good wheel did not come")
	}
}

// TestRefused checks that the proxy only reads package paths of its upstreams: other methods,
// proxy requests for other sites, unknown files and paths outside the archives are refused,
// and none of them reaches an upstream.
func TestRefused(t *testing.T) {
	up := pkgtest.Start(t, pkgtest.Options{})
	tp := startProxy(t, up.Config())
	tests := []struct {
		name, request string
		code          int
	}{
		{"npm publish", "PUT /npm/waggle-hello HTTP/1.1", 405},
		{"npm unpublish", "DELETE /npm/waggle-hello/-rev/1 HTTP/1.1", 405},
		{"npm audit", "POST /npm/-/npm/v1/security/advisories/bulk HTTP/1.1", 405},
		{"pypi upload", "POST /pypi/simple/ HTTP/1.1", 405},
		{"connect", "CONNECT example.com:443 HTTP/1.1", 405},
		{"absolute url", "GET http://example.com/ HTTP/1.1", 400},
		{"absolute url to an upstream", "GET " + up.PyPI + "/waggle-hello/ HTTP/1.1", 400},
		{"absolute url on the proxy's name", "GET http://" + wire.PackageProxyHost + "/pypi/simple/waggle-hello/ HTTP/1.1", 400},
		{"unknown file token", "GET /pypi/files/0123456789abcdef/x-1.0-py3-none-any.whl HTTP/1.1", 404},
		{"npm foreign file token", "GET /npm/-/waggle-files/0123456789abcdef/x-1.0.0.tgz HTTP/1.1", 404},
		{"pypi project list", "GET /pypi/simple/ HTTP/1.1", 404},
		{"pypi nested", "GET /pypi/simple/a/b/ HTTP/1.1", 404},
		{"npm search", "GET /npm/-/v1/search?text=x HTTP/1.1", 404},
		{"npm whoami", "GET /npm/-/whoami HTTP/1.1", 404},
		{"npm other path", "GET /npm/waggle-hello/extra HTTP/1.1", 404},
		{"npm scope only", "GET /npm/@scope HTTP/1.1", 404},
		{"apt outside", "GET /debian/README HTTP/1.1", 404},
		{"apt dot dot", "GET /debian/dists/../../etc/passwd HTTP/1.1", 404},
		{"apt escaped dot dot", "GET /debian/pool/%2e%2e/%2e%2e/x HTTP/1.1", 404},
		{"other path", "GET /etc/passwd HTTP/1.1", 404},
		{"root", "GET / HTTP/1.1", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pkgproxy.DialVM(context.Background(), tp.socket, "vm1")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "%s\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", tt.request, wire.PackageProxyHost)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || !bytes.Contains(body, []byte("waggle package proxy")) {
				t.Errorf("%s: %d %q, want %d and the proxy's message", tt.request, resp.StatusCode, body, tt.code)
			}
		})
	}
	if n := up.Hits("/simple/waggle-hello/") + up.Hits("/npm/waggle-hello") + up.Hits("/npm/-/v1/search"); n != 0 {
		t.Errorf("refused requests reached the upstream %d times", n)
	}
	// A connection without a VM's preamble is closed unanswered.
	c, err := net.Dial("unix", tp.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /pypi/simple/waggle-hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("a connection without preamble was answered (%d bytes, %v)", n, err)
	}
	if _, err := pkgproxy.DialVM(context.Background(), tp.socket, "../x"); err == nil {
		t.Error("DialVM took a bad vm id")
	}
}

// TestCoalesce asks for one file from many guests at once while the upstream is slow: one
// upstream request serves them all, each getting the whole file.
func TestCoalesce(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	hits := 0
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	sum := sha(data)
	upstream := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/simple/slow/":
			fmt.Fprintf(w, `<a href="/files/slow-1.0-py3-none-any.whl#sha256=%s">slow</a>`, sum)
		case "/files/slow-1.0-py3-none-any.whl":
			mu.Lock()
			hits++
			mu.Unlock()
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			_, _ = w.Write(data[:1000])
			w.(http.Flusher).Flush()
			<-release
			_, _ = w.Write(data[1000:])
		default:
			http.NotFound(w, r)
		}
	})
	cfg := pkgproxy.DefaultConfig()
	cfg.PyPIIndex = "http://" + upstream + "/simple"
	tp := startProxy(t, cfg)
	page := tp.mustGet(t, "vm1", wire.PyPIPath+"slow/", "")
	link := regexp.MustCompile(`/pypi/files/[0-9a-f]{16}/slow-1.0-py3-none-any.whl`).Find(page)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			code, _, body := tp.get(t, fmt.Sprintf("vm%d", i), string(link), "")
			if code != http.StatusOK || sha(body) != sum {
				errs <- fmt.Errorf("guest %d: %d, %d bytes", i, code, len(body))
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // let the guests ask while the first request is slow
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 1 {
		t.Errorf("%d upstream requests for %d concurrent guests, want 1", hits, n)
	}
}

// TestCacheLRU fills a small cache: the least recently used file goes first, and a new proxy
// on the same directory finds what was kept.
func TestCacheLRU(t *testing.T) {
	files := map[string][]byte{}
	for _, name := range []string{"a", "b", "c"} {
		files["/files/"+name+"-1.0-py3-none-any.whl"] = bytes.Repeat([]byte(name), 400<<10)
	}
	var mu sync.Mutex
	hits := map[string]int{}
	upstream := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/simple/") {
			name := strings.Trim(strings.TrimPrefix(r.URL.Path, "/simple/"), "/")
			p := "/files/" + name + "-1.0-py3-none-any.whl"
			fmt.Fprintf(w, `<a href="%s#sha256=%s">x</a>`, p, sha(files[p]))
			return
		}
		if data, ok := files[r.URL.Path]; ok {
			_, _ = w.Write(data)
			return
		}
		http.NotFound(w, r)
	})
	cfg := pkgproxy.DefaultConfig()
	cfg.PyPIIndex = "http://" + upstream + "/simple"
	cfg.CacheDir = t.TempDir()
	cfg.CacheSize = 1 << 20 // room for two files of 400 KiB (and the small pages)
	fetch := func(tp *testProxy, name string) {
		t.Helper()
		page := tp.mustGet(t, "vm1", wire.PyPIPath+name+"/", "")
		link := regexp.MustCompile(`/pypi/files/[0-9a-f]{16}/[a-z]-1.0-py3-none-any.whl`).Find(page)
		if got := tp.mustGet(t, "vm1", string(link), ""); len(got) != 400<<10 {
			t.Fatalf("%s: %d bytes", name, len(got))
		}
	}
	tp := startProxy(t, cfg)
	fetch(tp, "a")
	fetch(tp, "b")
	fetch(tp, "a") // a is now the most recently used
	fetch(tp, "c") // evicts b
	if entries, size := tp.p.CacheStats(); size > cfg.CacheSize {
		t.Errorf("cache holds %d bytes in %d entries, more than its %d", size, entries, cfg.CacheSize)
	}
	fetch(tp, "a")
	fetch(tp, "b")
	want := map[string]int{"a": 1, "b": 2, "c": 1}
	for name, n := range want {
		if got := hits["/files/"+name+"-1.0-py3-none-any.whl"]; got != n {
			t.Errorf("%s fetched %d times from the upstream, want %d", name, got, n)
		}
	}
	// Another proxy on the same cache finds the files kept (b, and a or c).
	again := startProxy(t, cfg)
	if entries, _ := again.p.CacheStats(); entries == 0 {
		t.Error("the cache was empty after a restart")
	}
	before := hits["/files/b-1.0-py3-none-any.whl"]
	fetch(again, "b")
	if hits["/files/b-1.0-py3-none-any.whl"] != before {
		t.Error("after a restart, b came from the upstream again")
	}
}

// TestUpstreamDown: a cached page outlives its upstream (stale is better than nothing); an
// uncached one gives 502 with the reason.
func TestUpstreamDown(t *testing.T) {
	up := pkgtest.Start(t, pkgtest.Options{})
	cfg := up.Config()
	cfg.MetadataTTL = time.Millisecond
	tp := startProxy(t, cfg)
	rec := tp.p.Record("vm1")
	fresh := tp.mustGet(t, "vm1", wire.NpmPath+pkgtest.Name, "")
	up.Close()
	time.Sleep(5 * time.Millisecond)
	if stale := tp.mustGet(t, "vm1", wire.NpmPath+pkgtest.Name, ""); !bytes.Equal(stale, fresh) {
		t.Error("the stale copy differs")
	}
	code, _, body := tp.get(t, "vm1", wire.PyPIPath+"waggle-hello/", "")
	if code != http.StatusBadGateway || !bytes.Contains(body, []byte("connection refused")) {
		t.Errorf("upstream down: %d %s", code, body)
	}
	if got := rec.Stop(); len(got.Failures) != 1 || !strings.Contains(got.Failures[0], "connection refused") {
		t.Errorf("failures recorded: %q", got.Failures)
	}
}

func TestParseUpstream(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"https://pypi.org/simple/", "https://pypi.org/simple"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"https://user:pw@art.example/api/npm/npm/", "https://user:pw@art.example/api/npm/npm"},
		{"ftp://x", ""}, {"pypi.org", ""}, {"https://", ""}, {"https://x/?a=b", ""}, {"https://x/#f", ""}, {"", ""},
	} {
		u, err := pkgproxy.ParseUpstream(tt.in)
		switch {
		case tt.want == "" && !errors.Is(err, pkgproxy.ErrBadUpstream):
			t.Errorf("%q: %v, %v; want ErrBadUpstream", tt.in, u, err)
		case tt.want != "" && (err != nil || u.String() != tt.want):
			t.Errorf("%q: %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

// TestLinksStayPublic: an index page's links and an upstream's redirects cannot lead the proxy
// to this host's services: other hosts than the configured upstreams are reached only at
// public addresses.
func TestLinksStayPublic(t *testing.T) {
	var mu sync.Mutex
	hidden := 0 // requests the local service got
	local := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hidden++
		mu.Unlock()
		fmt.Fprint(w, "secret")
	})
	_, lport, _ := net.SplitHostPort(local)
	upstream := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/simple/links/":
			fmt.Fprintf(w, `<a href="http://localhost:%s/a-1.0-py3-none-any.whl">a</a><a href="http://127.0.0.1:%s/b-1.0-py3-none-any.whl">b</a>`+
				`<a href="http://169.254.169.254/latest/c-1.0-py3-none-any.whl">c</a>`, lport, lport)
		case "/simple/redirect/":
			http.Redirect(w, r, "http://localhost:"+lport+"/simple/redirect/", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	cfg := pkgproxy.DefaultConfig()
	cfg.PyPIIndex = "http://" + upstream + "/simple"
	cfg.IdleTimeout = 5 * time.Second
	tp := startProxy(t, cfg)
	page := tp.mustGet(t, "vm1", wire.PyPIPath+"links/", "")
	links := regexp.MustCompile(`/pypi/files/[0-9a-f]{16}/[a-c]-1.0-py3-none-any.whl`).FindAll(page, -1)
	if len(links) != 3 {
		t.Fatalf("links not rewritten:\n%s", page)
	}
	for _, l := range links {
		if code, _, body := tp.get(t, "vm1", string(l), ""); code != http.StatusBadGateway || !bytes.Contains(body, []byte("not a public address")) {
			t.Errorf("%s: %d %s, want 502: not a public address", l, code, body)
		}
	}
	if code, _, body := tp.get(t, "vm1", wire.PyPIPath+"redirect/", ""); code != http.StatusBadGateway || !bytes.Contains(body, []byte("not a public address")) {
		t.Errorf("redirect: %d %s, want 502: not a public address", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if hidden != 0 {
		t.Errorf("the local service got %d requests through the proxy", hidden)
	}
}

// serveHTTP serves handler on a loopback port until the test ends and returns its host:port.
func serveHTTP(t testing.TB, handler http.HandlerFunc) string {
	t.Helper()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: handler}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
