// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Config configures a Proxy.
type Config struct {
	// PyPIIndex is the upstream simple index (PEP 503/691), e.g. https://pypi.org/simple or a
	// devpi or Artifactory index.
	PyPIIndex string
	// NpmRegistry is the upstream npm registry, e.g. https://registry.npmjs.org or Verdaccio.
	NpmRegistry string
	// AptMirror is the upstream Debian archive (the URL holding dists/ and pool/).
	AptMirror string
	// CacheDir holds the cache; CacheSize bounds the bytes of the bodies it keeps.
	CacheDir  string
	CacheSize int64
	// MetadataTTL is how long an index page (a PyPI project page, an npm package document, an
	// apt Release or Packages file) is served from the cache before it is asked for again.
	// Files (wheels, tarballs, .debs, by-hash indexes) are kept until evicted.
	MetadataTTL time.Duration
	// IdleTimeout fails an upstream response that sends nothing for this long.
	IdleTimeout time.Duration
	// MaxFileSize bounds a file, MaxIndexSize an index page.
	MaxFileSize  int64
	MaxIndexSize int64
	// Client fetches from the upstreams; nil means one with the host's trust store and proxy
	// settings (HTTPS_PROXY, ...) that reaches other hosts than the upstreams (those index
	// pages link to, or upstreams redirect to) only at public addresses.
	Client *http.Client
	Logger *slog.Logger
}

// DefaultConfig points at the public upstreams, with a 4 GiB cache; CacheDir must be set.
func DefaultConfig() Config {
	return Config{
		PyPIIndex:    "https://pypi.org/simple",
		NpmRegistry:  "https://registry.npmjs.org",
		AptMirror:    "https://deb.debian.org/debian",
		CacheSize:    4 << 30,
		MetadataTTL:  5 * time.Minute,
		IdleTimeout:  time.Minute,
		MaxFileSize:  4 << 30,
		MaxIndexSize: 256 << 20,
	}
}

// Proxy is a host's package proxy. Create it with New, serve guests with Serve (or use it as
// an http.Handler) and Close it when done.
type Proxy struct {
	cfg                       Config
	cache                     *cache
	links                     *links
	logger                    *slog.Logger
	stop                      context.CancelFunc
	indexes                   chan struct{} // a token per index page being served
	recMu                     sync.Mutex
	recordings                map[string][]*Recording // by VM
	pypiBase, npmBase, aptURL string                  // the upstreams' URLs, without a final '/'
}

// New checks cfg and opens the cache.
func New(cfg Config) (*Proxy, error) {
	def := DefaultConfig()
	if cfg.CacheDir == "" {
		return nil, errors.New("package proxy: CacheDir is required")
	}
	if cfg.CacheSize <= 0 {
		return nil, fmt.Errorf("package proxy: cache size %d must be positive", cfg.CacheSize)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.MetadataTTL, def.MetadataTTL}, {&cfg.IdleTimeout, def.IdleTimeout}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = def.MaxFileSize
	}
	if cfg.MaxIndexSize <= 0 {
		cfg.MaxIndexSize = def.MaxIndexSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Proxy{cfg: cfg, links: newLinks(), logger: cfg.Logger, recordings: map[string][]*Recording{},
		indexes: make(chan struct{}, maxIndexesAtOnce)}
	var upstreams []*url.URL
	for _, u := range []struct {
		name, raw string
		base      *string
	}{{"PyPI index", cfg.PyPIIndex, &p.pypiBase}, {"npm registry", cfg.NpmRegistry, &p.npmBase}, {"apt mirror", cfg.AptMirror, &p.aptURL}} {
		parsed, err := ParseUpstream(u.raw)
		if err != nil {
			return nil, fmt.Errorf("package proxy: %s: %w", u.name, err)
		}
		*u.base = parsed.String()
		upstreams = append(upstreams, parsed)
	}
	if p.cfg.Client == nil {
		p.cfg.Client = newClient(upstreams, cfg.IdleTimeout)
	}
	var err error
	ctx, cancel := context.WithCancel(context.Background())
	p.cache, err = newCache(ctx, cfg.CacheDir, cfg.CacheSize, cfg.IdleTimeout, cfg.Logger)
	if err != nil {
		cancel()
		return nil, err
	}
	p.stop = cancel
	return p, nil
}

// ErrBadUpstream is wrapped by ParseUpstream's errors.
var ErrBadUpstream = errors.New("bad upstream URL")

// ParseUpstream reads an upstream URL: http or https, with a host, no query or fragment; a
// final '/' is dropped.
func ParseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w %q: %w", ErrBadUpstream, raw, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("%w %q: want http:// or https:// and a host", ErrBadUpstream, raw)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("%w %q: no query or fragment", ErrBadUpstream, raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Close ends the upstream fetches in progress and waits for them.
func (p *Proxy) Close() {
	p.stop()
	p.cache.close()
}

// Serve serves the connections shims relay (see DialVM) on ln until ctx ends, then closes ln.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	})
	defer stop()
	err := srv.Serve(vmListener{ln})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("package proxy: %w", err)
}

// ServeHTTP answers a guest's request: GET or HEAD of a path below wire.PyPIPath,
// wire.NpmPath or wire.AptPath (in origin form: the proxy is no forward proxy).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		p.refuse(w, http.StatusMethodNotAllowed, "the package proxy only reads packages (GET and HEAD): %s is refused", r.Method)
		return
	case !strings.HasPrefix(r.RequestURI, "/"):
		p.refuse(w, http.StatusBadRequest, "the package proxy is not a proxy for other sites: ask for paths below %s, %s and %s/",
			wire.PyPIPath, wire.NpmPath, wire.AptPath)
		return
	}
	path := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(path, wire.PyPIPath):
		p.servePyPIIndex(w, r, strings.TrimPrefix(path, wire.PyPIPath))
	case strings.HasPrefix(path, pypiFiles):
		p.serveTokenFile(w, r, strings.TrimPrefix(path, pypiFiles), "pip")
	case strings.HasPrefix(path, npmFiles):
		p.serveTokenFile(w, r, strings.TrimPrefix(path, npmFiles), "npm")
	case strings.HasPrefix(path, wire.NpmPath):
		p.serveNpm(w, r, strings.TrimPrefix(path, wire.NpmPath))
	case strings.HasPrefix(path, wire.AptPath+"/"):
		p.serveApt(w, r, strings.TrimPrefix(path, wire.AptPath+"/"))
	default:
		p.refuse(w, http.StatusNotFound, "not a package path: the proxy serves %s (pip), %s (npm) and %s/ (apt)",
			wire.PyPIPath, wire.NpmPath, wire.AptPath)
	}
}

// Paths of files the proxy names by token (see fileToken): PyPI's files, and npm tarballs
// outside the registry.
const (
	pypiFiles = "/pypi/files/"
	npmFiles  = wire.NpmPath + "-/waggle-files/"
)

// refuse answers with an error the guest's package manager shows.
func (p *Proxy) refuse(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "waggle package proxy: "+format+"\n", args...)
}

// fail answers a failed fetch: the upstream's 4xx status as it gave it, 502 for anything else.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	var ue *upstreamError
	if errors.As(err, &ue) && ue.status >= 400 && ue.status < 500 {
		p.refuse(w, ue.status, "upstream %s", ue)
		return
	}
	vm := vmOf(r.Context())
	p.logger.Warn("package upstream failed", "path", r.URL.Path, "vm", vm, "err", err)
	p.noteFailure(vm, err.Error())
	p.refuse(w, http.StatusBadGateway, "upstream failed: %v", err)
}

// get fetches (or finds in the cache) one upstream body.
func (p *Proxy) get(ctx context.Context, key, rawURL, accept string, ttl time.Duration, want digest, max int64,
	complete func(io.ReaderAt, int64)) (*body, error) {
	return p.cache.get(ctx, fetchSpec{key: key, ttl: ttl, want: want, max: max, complete: complete,
		open: func(ctx context.Context) (*http.Response, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
			if err != nil {
				return nil, &upstreamError{url: rawURL, err: err}
			}
			req.Header.Set("User-Agent", "waggle-package-proxy")
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			resp, err := p.cfg.Client.Do(req)
			if err != nil {
				return nil, &upstreamError{url: req.URL.Redacted(), err: err}
			}
			return resp, nil
		}})
}

// maxIndexesAtOnce bounds the index pages read and rewritten at once, each held in memory
// (up to Config.MaxIndexSize, and its rewrite): guests cannot make the host hold more.
const maxIndexesAtOnce = 4

// serveIndex sends an index page (cached for MetadataTTL) as rewrite makes it from the
// upstream's body and content type.
func (p *Proxy) serveIndex(w http.ResponseWriter, r *http.Request, key, rawURL, accept string,
	rewrite func(contentType string, data []byte) ([]byte, string, error)) {
	select {
	case p.indexes <- struct{}{}:
		defer func() { <-p.indexes }()
	case <-r.Context().Done():
		return
	}
	b, err := p.get(r.Context(), key, rawURL, accept, p.cfg.MetadataTTL, digest{}, p.cfg.MaxIndexSize, nil)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	data, err := b.bytes(p.cfg.MaxIndexSize)
	ct := b.contentType
	b.Close()
	if err == nil {
		data, ct, err = rewrite(ct, data)
	}
	if err != nil {
		p.fail(w, r, fmt.Errorf("index %s: %w", rawURL, err))
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

// serveFile sends a file and, once it is all sent, notes it for the VM's recordings if it is a
// package file (file.Manager set).
func (p *Proxy) serveFile(w http.ResponseWriter, r *http.Request, b *body, file events.PackageFile) {
	if b.contentType != "" {
		w.Header().Set("Content-Type", b.contentType)
	}
	if b.cached {
		http.ServeContent(w, r, file.File, time.Time{}, b.file)
	} else {
		if b.size >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(b.size, 10))
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		if _, err := io.Copy(w, b); err != nil {
			// The guest must not take a short or unverified body for a whole one.
			vm := vmOf(r.Context())
			p.logger.Warn("package file not sent whole", "file", file.File, "vm", vm, "err", err)
			if r.Context().Err() == nil {
				p.noteFailure(vm, err.Error())
			}
			panic(http.ErrAbortHandler)
		}
	}
	if r.Method == http.MethodHead || file.Manager == "" {
		return
	}
	file.Cached, file.Size = b.cached, b.size
	if b.sha256 != "" {
		file.SHA256 = b.sha256
	}
	p.note(vmOf(r.Context()), file)
}

// CacheStats are the number of cached responses and their bytes.
func (p *Proxy) CacheStats() (entries int, bytes int64) { return p.cache.stats() }
