// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// fuzzProxy is a Proxy without cache or server, for the parsers.
func fuzzProxy(t *testing.T) *Proxy {
	t.Helper()
	return &Proxy{links: newLinks(), logger: slog.New(slog.DiscardHandler),
		pypiBase: "https://pypi.example/simple", npmBase: "https://npm.example", aptURL: "https://deb.example/debian"}
}

// FuzzParseNpmPath checks that an accepted path names a package (and tarball) of the
// registry's own: the upstream URL stays below the registry and climbs nowhere.
func FuzzParseNpmPath(f *testing.F) {
	for _, s := range []string{"lodash", "@types/node", "@types%2fnode", "lodash/-/lodash-4.17.21.tgz", "@a/b/-/b-1.0.0.tgz",
		"-/v1/search", "a/../b", "%2e%2e", "@x", "a/-/../../x.tgz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		np, ok := parseNpmPath(s)
		if !ok {
			return
		}
		u := np.upstream("https://npm.example")
		rest, ok := strings.CutPrefix(u, "https://npm.example/")
		if !ok || strings.HasPrefix(rest, "-") || strings.ContainsAny(rest, "?# \\") {
			t.Fatalf("%q: upstream %q", s, u)
		}
		for seg := range strings.SplitSeq(rest, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("%q: upstream %q", s, u)
			}
		}
		if np.tarball != "" && (!strings.HasSuffix(np.tarball, ".tgz") || strings.Contains(np.tarball, "/")) {
			t.Fatalf("%q: tarball %q", s, np.tarball)
		}
	})
}

var proxiedHref = regexp.MustCompile(`href="(/pypi/files/([0-9a-f]{16})/[^"#]*)`)

// FuzzRewritePyPIHTML checks that a rewritten page's every proxied link is one the proxy
// remembers, and that pages never make it fail other than by returning an error.
func FuzzRewritePyPIHTML(f *testing.F) {
	f.Add([]byte(`<a href="../../packages/x-1.0.tar.gz#sha256=00">x</a>`))
	f.Add([]byte(`<html><a href="https://files.example/x-1.0-py3-none-any.whl" data-dist-info-metadata="sha256=ab">x</a><a name=y>`))
	f.Add([]byte(`<a href="javascript:alert(1)">x</a><a href='//evil/x.whl'>`))
	f.Fuzz(func(t *testing.T, page []byte) {
		p := fuzzProxy(t)
		out, err := p.rewritePyPIHTML("https://pypi.example/simple/x/", "x", page)
		if err != nil {
			return
		}
		for _, m := range proxiedHref.FindAllSubmatch(out, -1) {
			if _, ok := p.links.byToken(string(m[2])); !ok && !bytes.Contains(page, m[1]) {
				t.Fatalf("link %s names no known file", m[1])
			}
		}
	})
}

// FuzzRewriteIndexes feeds the JSON rewriters and the apt index readers arbitrary bytes: every
// file they remember is an http(s) URL, the apt ones below the mirror.
func FuzzRewriteIndexes(f *testing.F) {
	f.Add([]byte(`{"files":[{"url":"x-1.0.tar.gz","hashes":{"sha256":"00"},"core-metadata":{"sha256":"ab"}}]}`))
	f.Add([]byte(`{"versions":{"1.0.0":{"dist":{"tarball":"https://npm.example/a/-/a-1.0.0.tgz","integrity":"sha512-AA=="}}}}`))
	f.Add([]byte("SHA256:\n 0000000000000000000000000000000000000000000000000000000000000000 1 main/binary-amd64/Packages\n"))
	f.Add([]byte("Package: a\nVersion: 1\nFilename: pool/main/a/a_1_all.deb\nSHA256: 00\n\nFilename: ../../etc/passwd\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := fuzzProxy(t)
		_, _ = p.rewritePyPIJSON("https://pypi.example/simple/x/", "x", data)
		_, _ = p.rewriteNpm("a", data)
		p.aptRelease("bookworm")(bytes.NewReader(data), int64(len(data)))
		p.aptPackages(bytes.NewReader(data))
		for url, l := range p.links.byURL {
			if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
				t.Fatalf("remembered %q", url)
			}
			if l.manager == "apt" && (!strings.HasPrefix(url, p.aptURL+"/") || strings.Contains(url, "/../")) {
				t.Fatalf("apt file %q outside the mirror", url)
			}
		}
	})
}

// FuzzServeAptPath checks the archive paths the proxy accepts: below dists/ or pool/, clean.
func FuzzServeAptPath(f *testing.F) {
	for _, s := range []string{"dists/bookworm/InRelease", "pool/main/c/curl/curl_7.88_amd64.deb", "dists/../x", "pool/%2e%2e/x",
		"README", "dists//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rel, ok := aptPath(s)
		if !ok {
			return
		}
		if strings.Contains(rel, "..") || strings.Contains(rel, "//") || !strings.HasPrefix(rel, "dists/") && !strings.HasPrefix(rel, "pool/") {
			t.Fatalf("%q accepted as %q", s, rel)
		}
	})
}
