// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // npm's dist.shasum is SHA-1; it is checked, not trusted alone
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
)

// digest is a hash an index gives for a file.
type digest struct {
	algo string // "sha256", "sha512" or "sha1"; "" for none
	sum  []byte
}

func (d digest) String() string {
	if d.algo == "" {
		return "no digest"
	}
	return d.algo + ":" + hex.EncodeToString(d.sum)
}

// hash returns a new hash of d's algorithm, or nil for none.
func (d digest) hash() hash.Hash {
	switch d.algo {
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	case "sha1":
		return sha1.New() //nolint:gosec // see the import
	}
	return nil
}

func (d digest) matches(sum []byte) bool { return bytes.Equal(d.sum, sum) }

// hexDigest reads a hex digest of algo, or gives none if it is malformed.
func hexDigest(algo, s string) digest {
	sum, err := hex.DecodeString(strings.TrimSpace(s))
	d := digest{algo: algo, sum: sum}
	if err != nil || d.hash() == nil || len(sum) != d.hash().Size() {
		return digest{}
	}
	return d
}

// sriDigest reads a Subresource Integrity string (npm's dist.integrity, "sha512-BASE64", maybe
// several separated by spaces), preferring sha512.
func sriDigest(s string) digest {
	var best digest
	for f := range strings.FieldsSeq(s) {
		algo, b64, ok := strings.Cut(f, "-")
		if !ok {
			continue
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		d := digest{algo: algo, sum: sum}
		if err != nil || d.hash() == nil || len(sum) != d.hash().Size() {
			continue
		}
		if best.algo == "" || d.algo == "sha512" {
			best = d
		}
	}
	return best
}

// link is what an index said about a file it links to.
type link struct {
	url     string
	want    digest
	manager string // pip, npm or apt
	name    string // the package, when the index says
	version string
	path    string // apt: the file's path below dists/<suite>/, for by-hash files
}

// maxLinks bounds the links remembered; the oldest are forgotten first. Debian's main
// archive lists about 65,000 files per architecture.
const maxLinks = 250_000

// links remembers the files index pages linked to, by upstream URL and by fileToken, so that
// files are fetched only as their index named them and verified by the digest it gave.
type links struct {
	mu    sync.Mutex
	byURL map[string]link
	token map[string]string // fileToken(url) -> url
	order []string          // ring of URLs, oldest at next
	next  int
}

func newLinks() *links {
	return &links{byURL: map[string]link{}, token: map[string]string{}}
}

// add remembers l (replacing what was known of its URL).
func (ls *links) add(l link) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if _, ok := ls.byURL[l.url]; !ok {
		if len(ls.order) < maxLinks {
			ls.order = append(ls.order, l.url)
		} else {
			old := ls.order[ls.next]
			delete(ls.byURL, old)
			delete(ls.token, fileToken(old))
			ls.order[ls.next] = l.url
			ls.next = (ls.next + 1) % maxLinks
		}
	}
	ls.byURL[l.url] = l
	ls.token[fileToken(l.url)] = l.url
}

func (ls *links) get(url string) (link, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, ok := ls.byURL[url]
	return l, ok
}

func (ls *links) byToken(token string) (link, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	url, ok := ls.token[token]
	if !ok {
		return link{}, false
	}
	return ls.byURL[url], true
}

// fileToken names an upstream file URL in the proxy's own file paths: the first 16 hex digits
// of its SHA-256. Only URLs an index linked to (or cached ones) are found by their token.
func fileToken(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:8])
}
