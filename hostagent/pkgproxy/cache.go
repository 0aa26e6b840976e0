// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// entry is one cached response: the body in <dir>/<name>.data, this record in <name>.json.
type entry struct {
	Key         string    `json:"key"`
	ContentType string    `json:"content_type,omitempty"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Fetched     time.Time `json:"fetched"`

	name string
	elem *list.Element // in cache.lru
}

// cache keeps upstream responses on disk, at most max bytes of bodies, evicting the least
// recently used. A fetch of a key nobody fetches yet starts a flight; everyone who asks for
// the key meanwhile reads that flight's body as it arrives.
type cache struct {
	dir    string
	max    int64
	idle   time.Duration // an upstream body that makes no progress this long fails
	logger *slog.Logger
	ctx    context.Context // ends the flights when the cache closes
	wg     sync.WaitGroup  // the flights' goroutines

	mu      sync.Mutex
	entries map[string]*entry
	tokens  map[string]string // fileToken(key) -> key
	lru     *list.List        // *entry, most recently used first
	size    int64
	flights map[string]*flight
}

// fetchSpec is what to fetch for a key, and how to keep it.
type fetchSpec struct {
	key string        // the upstream URL (plus a variant of the content negotiated, for index pages)
	ttl time.Duration // how long the cached copy is fresh; 0: until evicted
	// want is the body's digest, when an index gave it: a body that differs is refused.
	want digest
	max  int64 // the largest body accepted
	// open sends the upstream request.
	open func(ctx context.Context) (*http.Response, error)
	// complete, if set, reads the whole verified body before it is kept and served in full
	// (apt's Release and Packages: the hashes they list are registered this way).
	complete func(r io.ReaderAt, size int64)
}

// upstreamError is an upstream's answer other than 200, or its failure to answer.
type upstreamError struct {
	status int // the upstream's HTTP status; 0 if it did not answer
	url    string
	err    error
}

func (e *upstreamError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("%s: %d %s", e.url, e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("%s: %v", e.url, e.err)
}

func (e *upstreamError) Unwrap() error { return e.err }

// errTooLarge and errDigest fail a fetch whose body is too large or not what its index said.
var (
	errTooLarge = errors.New("body too large")
	errDigest   = errors.New("body does not match the digest its index gave")
)

func newCache(ctx context.Context, dir string, max int64, idle time.Duration, logger *slog.Logger) (*cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	c := &cache{dir: dir, max: max, idle: idle, logger: logger, ctx: ctx,
		entries: map[string]*entry{}, tokens: map[string]string{}, lru: list.New(), flights: map[string]*flight{}}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	return c, nil
}

func entryName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func (c *cache) dataPath(name string) string { return filepath.Join(c.dir, name+".data") }
func (c *cache) metaPath(name string) string { return filepath.Join(c.dir, name+".json") }

// load reads the entries a previous run left, most recently used (by the data file's mtime)
// first, and removes unfinished fetches and files without a record.
func (c *cache) load() error {
	files, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	type found struct {
		e    *entry
		used time.Time
	}
	var keep []found
	known := map[string]bool{}
	for _, f := range files {
		name, ok := strings.CutSuffix(f.Name(), ".json")
		if !ok {
			continue
		}
		var e entry
		data, err := os.ReadFile(c.metaPath(name))
		if err == nil {
			err = json.Unmarshal(data, &e)
		}
		st, serr := os.Stat(c.dataPath(name))
		if err != nil || serr != nil || st.Size() != e.Size || entryName(e.Key) != name {
			continue // removed below
		}
		e.name = name
		known[name] = true
		keep = append(keep, found{&e, st.ModTime()})
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimSuffix(f.Name(), ".json"), ".data")
		if !known[name] {
			_ = os.Remove(filepath.Join(c.dir, f.Name()))
		}
	}
	slices.SortFunc(keep, func(a, b found) int { return b.used.Compare(a.used) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range keep {
		c.addLocked(f.e)
	}
	c.evictLocked()
	return nil
}

// addLocked records e as the least recently used entry (load adds in order of use).
func (c *cache) addLocked(e *entry) {
	if old := c.entries[e.Key]; old != nil {
		c.removeLocked(old, false)
	}
	e.elem = c.lru.PushBack(e)
	c.entries[e.Key] = e
	c.tokens[fileToken(e.Key)] = e.Key
	c.size += e.Size
}

// removeLocked forgets e and, if files, deletes its files (an open body stays readable).
func (c *cache) removeLocked(e *entry, files bool) {
	c.lru.Remove(e.elem)
	delete(c.entries, e.Key)
	delete(c.tokens, fileToken(e.Key))
	c.size -= e.Size
	if files {
		_ = os.Remove(c.metaPath(e.name))
		_ = os.Remove(c.dataPath(e.name))
	}
}

func (c *cache) evictLocked() {
	for c.size > c.max && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back().Value.(*entry), true)
	}
}

// keyOfToken is the key of a cached entry whose fileToken is token.
func (c *cache) keyOfToken(token string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.tokens[token]
	return k, ok
}

// stats are the cache's entry count and bytes.
func (c *cache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.size
}

// get returns the body of spec.key: the cached copy while it is fresh, else the body of the
// (possibly shared) upstream fetch, or, if the upstream fails to answer or answers with a
// server error, the stale copy. The caller closes the body.
func (c *cache) get(ctx context.Context, spec fetchSpec) (*body, error) {
	c.mu.Lock()
	e := c.entries[spec.key]
	if e != nil && (spec.ttl == 0 || time.Since(e.Fetched) < spec.ttl) {
		if b := c.openLocked(e); b != nil {
			c.mu.Unlock()
			return b, nil
		}
		e = nil
	}
	fl := c.flights[spec.key]
	if fl == nil {
		fl = newFlight(func() { c.ground(spec.key, fl) })
		fl.refs = 1 // the fetch's, released when it ends
		c.flights[spec.key] = fl
		c.wg.Go(func() { c.fly(fl, spec) })
	}
	fl.refs++
	c.mu.Unlock()

	select {
	case <-fl.ready:
	case <-ctx.Done():
		c.release(fl)
		return nil, ctx.Err()
	}
	if err := fl.headerErr; err != nil {
		c.release(fl)
		var ue *upstreamError
		if e != nil && errors.As(err, &ue) && (ue.status == 0 || ue.status >= 500) {
			c.mu.Lock()
			b := c.openLocked(e)
			c.mu.Unlock()
			if b != nil {
				c.logger.Warn("package upstream failed; serving the cached copy", "url", ue.url, "age", time.Since(e.Fetched).Round(time.Second), "err", err)
				return b, nil
			}
		}
		return nil, err
	}
	return &body{c: c, fl: fl, contentType: fl.contentType, size: fl.length}, nil
}

// openLocked opens e's body and marks it used, or forgets e if its file is gone.
func (c *cache) openLocked(e *entry) *body {
	f, err := os.Open(c.dataPath(e.name))
	if err != nil {
		c.removeLocked(e, true)
		return nil
	}
	c.lru.MoveToFront(e.elem)
	now := time.Now()
	_ = os.Chtimes(c.dataPath(e.name), now, now) // the order of use, for the next load
	return &body{c: c, file: f, contentType: e.ContentType, size: e.Size, sha256: e.SHA256, cached: true}
}

// release drops a reference to fl; the last one closes its file.
func (c *cache) release(fl *flight) {
	c.mu.Lock()
	fl.refs--
	last := fl.refs == 0
	c.mu.Unlock()
	if last && fl.f != nil {
		fl.f.Close()
	}
}

// fly runs one upstream fetch into a temporary file, verifies it and keeps it.
func (c *cache) fly(fl *flight, spec fetchSpec) {
	defer c.release(fl)
	defer c.ground(spec.key, fl) // on every path; failHeaders and finish did it already
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	// The upstream must keep sending: a body that stalls for idle fails.
	watchdog := time.AfterFunc(c.idle, cancel)
	defer watchdog.Stop()
	resp, err := spec.open(ctx)
	if err != nil {
		fl.failHeaders(err)
		return
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		fl.failHeaders(&upstreamError{status: resp.StatusCode, url: resp.Request.URL.Redacted()})
		return
	case resp.ContentLength > spec.max:
		fl.failHeaders(fmt.Errorf("%s: %w: %d bytes, the limit is %d", resp.Request.URL.Redacted(), errTooLarge, resp.ContentLength, spec.max))
		return
	}
	tmp, err := os.CreateTemp(c.dir, "tmp-*")
	if err != nil {
		fl.failHeaders(fmt.Errorf("package cache: %w", err))
		return
	}
	defer os.Remove(tmp.Name()) // renamed away once kept
	fl.f, fl.contentType, fl.length = tmp, resp.Header.Get("Content-Type"), resp.ContentLength
	close(fl.ready)

	sum, err := c.copyBody(fl, resp.Body, spec, watchdog)
	if err == nil && spec.complete != nil {
		spec.complete(tmp, fl.written)
	}
	if err != nil {
		fl.finish("", fmt.Errorf("%s: %w", resp.Request.URL.Redacted(), err))
		return
	}
	e := &entry{Key: spec.key, ContentType: fl.contentType, Size: fl.written, SHA256: sum, Fetched: time.Now(),
		name: entryName(spec.key)}
	if err := c.keep(tmp.Name(), e); err != nil {
		c.logger.Warn("package cache: response not kept", "key", spec.key, "err", err)
	}
	fl.finish(sum, nil)
}

// ground takes fl off the flights if it is still key's, so that a fetch of key asked for
// from now on starts a flight of its own.
func (c *cache) ground(key string, fl *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flights[key] == fl {
		delete(c.flights, key)
	}
}

// copyBody copies src into fl's file, hashing it, and checks its size and digest.
func (c *cache) copyBody(fl *flight, src io.Reader, spec fetchSpec, watchdog *time.Timer) (string, error) {
	sha := sha256.New()
	want := spec.want.hash()
	buf := make([]byte, 64<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			watchdog.Reset(c.idle)
			if fl.written+int64(n) > spec.max {
				return "", fmt.Errorf("%w: more than %d bytes", errTooLarge, spec.max)
			}
			if _, err := fl.f.Write(buf[:n]); err != nil {
				return "", fmt.Errorf("package cache: %w", err)
			}
			sha.Write(buf[:n])
			if want != nil {
				want.Write(buf[:n])
			}
			fl.advance(int64(n))
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return "", rerr
		}
	}
	if fl.length >= 0 && fl.written != fl.length {
		return "", fmt.Errorf("body of %d bytes, not the %d announced", fl.written, fl.length)
	}
	if want != nil && !spec.want.matches(want.Sum(nil)) {
		return "", fmt.Errorf("%w (%s)", errDigest, spec.want)
	}
	return hex.EncodeToString(sha.Sum(nil)), nil
}

// keep moves a verified body into the cache and evicts what no longer fits. A body larger
// than the whole cache is not kept.
func (c *cache) keep(tmp string, e *entry) error {
	if e.Size > c.max {
		return nil
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := os.Rename(tmp, c.dataPath(e.name)); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(c.metaPath(e.name), data, 0o600); err != nil {
		_ = os.Remove(c.dataPath(e.name))
		return err
	}
	c.addLocked(e)
	c.lru.MoveToFront(e.elem)
	c.evictLocked()
	return nil
}

// close waits for the flights, which end with the cache's context.
func (c *cache) close() { c.wg.Wait() }

// flight is one upstream fetch in progress; its readers wait for the bytes they want.
type flight struct {
	ready chan struct{} // closed once the upstream's headers are in (or it failed)
	// Set before ready is closed:
	headerErr   error
	contentType string
	length      int64 // -1 if the upstream did not say
	f           *os.File

	refs int // under cache.mu: the fetch and each reader
	// ground takes the flight off the cache's flights; it runs before the flight tells its
	// readers that it ended, so that a request made after a reader saw the end (a retry after
	// a failure) never joins this flight.
	ground func()

	mu      sync.Mutex
	cond    *sync.Cond
	written int64
	done    bool
	err     error
	sha256  string
}

func newFlight(ground func()) *flight {
	fl := &flight{ready: make(chan struct{}), ground: ground}
	fl.cond = sync.NewCond(&fl.mu)
	return fl
}

func (fl *flight) failHeaders(err error) {
	fl.ground()
	fl.headerErr = err
	close(fl.ready)
}

func (fl *flight) advance(n int64) {
	fl.mu.Lock()
	fl.written += n
	fl.mu.Unlock()
	fl.cond.Broadcast()
}

func (fl *flight) finish(sum string, err error) {
	fl.ground()
	fl.mu.Lock()
	fl.done, fl.sha256, fl.err = true, sum, err
	fl.mu.Unlock()
	fl.cond.Broadcast()
}

// readAt reads the body at off once it has arrived: io.EOF at its end, the fetch's error if
// it failed (even after all bytes arrived: the body was then not what it should be).
func (fl *flight) readAt(p []byte, off int64) (int, error) {
	fl.mu.Lock()
	for fl.written <= off && !fl.done {
		fl.cond.Wait()
	}
	written, done, err := fl.written, fl.done, fl.err
	fl.mu.Unlock()
	if off >= written || (done && err != nil) {
		if err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	n, rerr := fl.f.ReadAt(p[:min(int64(len(p)), written-off)], off)
	if errors.Is(rerr, io.EOF) {
		rerr = nil
	}
	return n, rerr
}

// body is a response body: a cached file, or a flight still arriving.
type body struct {
	c           *cache
	file        *os.File // cached
	fl          *flight  // or being fetched
	contentType string
	size        int64  // -1 while unknown
	sha256      string // known for a cached body; a fetched one's once read to the end
	cached      bool
	off         int64
}

// Read reads the body in order, waiting for bytes still on their way.
func (b *body) Read(p []byte) (int, error) {
	var n int
	var err error
	if b.file != nil {
		n, err = b.file.Read(p)
	} else {
		n, err = b.fl.readAt(p, b.off)
	}
	b.off += int64(n)
	if errors.Is(err, io.EOF) && b.fl != nil {
		b.fl.mu.Lock()
		b.sha256 = b.fl.sha256
		b.fl.mu.Unlock()
	}
	return n, err
}

// bytes reads the whole body, at most max bytes.
func (b *body) bytes(max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(b, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%w: more than %d bytes", errTooLarge, max)
	}
	return data, err
}

func (b *body) Close() {
	if b.file != nil {
		b.file.Close()
	} else {
		b.c.release(b.fl)
	}
}
