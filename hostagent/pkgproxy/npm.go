// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// acceptCorgi is the abbreviated package document npm asks for when installing.
const acceptCorgi = "application/vnd.npm.install-v1+json"

var (
	npmScopeRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._~-]{0,213}$`)
	npmNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,213}$`)
	npmTarballRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~+-]*\.tgz$`)
)

// npmPath is a request below wire.NpmPath: a package document, or one of its tarballs.
type npmPath struct {
	pkg     string // name, or @scope/name
	tarball string // the tarball's file name; "" for the document
}

// parseNpmPath reads "<name>", "@scope/<name>" (also "@scope%2f<name>", as npm sends it),
// "<name>/-/<file>.tgz" or "@scope/<name>/-/<file>.tgz"; nothing else is npm's to serve.
func parseNpmPath(escaped string) (npmPath, bool) {
	s, err := url.PathUnescape(escaped)
	if err != nil {
		return npmPath{}, false
	}
	var np npmPath
	rest := s
	if scoped, ok := strings.CutPrefix(s, "@"); ok {
		scope, after, ok := strings.Cut(scoped, "/")
		if !ok || !npmScopeRE.MatchString(scope) {
			return npmPath{}, false
		}
		np.pkg, rest = "@"+scope+"/", after
	}
	name, tail, _ := strings.Cut(rest, "/")
	if !npmNameRE.MatchString(name) || len(np.pkg)+len(name) > 214 {
		return npmPath{}, false
	}
	np.pkg += name
	if tail == "" {
		return np, !strings.HasSuffix(rest, "/")
	}
	file, ok := strings.CutPrefix(tail, "-/")
	if !ok || !npmTarballRE.MatchString(file) {
		return npmPath{}, false
	}
	np.tarball = file
	return np, true
}

// upstream is the document's or tarball's URL on the registry.
func (np npmPath) upstream(base string) string {
	if np.tarball != "" {
		return base + "/" + np.pkg + "/-/" + np.tarball
	}
	// A scoped name is one path segment: @scope%2fname.
	return base + "/" + strings.Replace(np.pkg, "/", "%2f", 1)
}

// serveNpm serves a package document (tarball URLs rewritten to the proxy) or a tarball.
func (p *Proxy) serveNpm(w http.ResponseWriter, r *http.Request, rest string) {
	np, ok := parseNpmPath(rest)
	if !ok {
		p.refuse(w, http.StatusNotFound, "%q is not an npm package document or tarball: ask for %s<name>, %s@scope/<name> or their tarballs",
			rest, wire.NpmPath, wire.NpmPath)
		return
	}
	u := np.upstream(p.npmBase)
	if np.tarball != "" {
		l, _ := p.links.get(u) // a tarball not seen in a document is served unverified
		b, err := p.get(r.Context(), u, u, "", 0, l.want, p.cfg.MaxFileSize, nil)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		defer b.Close()
		pf := events.PackageFile{Manager: "npm", Name: np.pkg, Version: l.version, File: np.tarball}
		if pf.Version == "" {
			pf.Version = npmTarballVersion(np)
		}
		p.serveFile(w, r, b, pf)
		return
	}
	key, accept := u+"#full", "application/json"
	if strings.Contains(r.Header.Get("Accept"), acceptCorgi) {
		key, accept = u+"#corgi", acceptCorgi+"; q=1.0, application/json; q=0.8, */*"
	}
	p.serveIndex(w, r, key, u, accept, func(ct string, data []byte) ([]byte, string, error) {
		if ct == "" {
			ct = "application/json"
		}
		data, err := p.rewriteNpm(np.pkg, data)
		return data, ct, err
	})
}

// npmTarballVersion reads the version from a tarball's name, "<basename>-<version>.tgz".
func npmTarballVersion(np npmPath) string {
	base := np.pkg[strings.LastIndexByte(np.pkg, '/')+1:]
	v, _ := strings.CutSuffix(strings.TrimPrefix(np.tarball, base+"-"), ".tgz")
	return v
}

// rewriteNpm points the tarball of every version of a package document at the proxy and
// remembers each with its integrity.
func (p *Proxy) rewriteNpm(pkg string, data []byte) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var versions map[string]map[string]json.RawMessage
	if raw, ok := doc["versions"]; ok {
		if err := json.Unmarshal(raw, &versions); err != nil {
			return nil, fmt.Errorf("versions: %w", err)
		}
	}
	for ver, v := range versions {
		var dist map[string]json.RawMessage
		if json.Unmarshal(v["dist"], &dist) != nil {
			continue
		}
		var tarball, integrity, shasum string
		if json.Unmarshal(dist["tarball"], &tarball) != nil {
			continue
		}
		_ = json.Unmarshal(dist["integrity"], &integrity)
		_ = json.Unmarshal(dist["shasum"], &shasum)
		want := sriDigest(integrity)
		if want.algo == "" {
			want = hexDigest("sha1", shasum)
		}
		proxied := p.npmTarball(tarball, pkg, ver, want)
		if proxied == "" {
			continue
		}
		dist["tarball"], _ = json.Marshal(proxied)
		v["dist"], _ = json.Marshal(dist)
	}
	if versions != nil {
		var err error
		if doc["versions"], err = json.Marshal(versions); err != nil {
			return nil, err
		}
	}
	return json.Marshal(doc)
}

// npmTarball remembers a tarball URL of a document and returns the proxy's URL for it: the
// same path for tarballs on the registry, a file token for those elsewhere; "" for a URL the
// proxy does not serve.
func (p *Proxy) npmTarball(raw, pkg, version string, want digest) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	u.Fragment, u.RawFragment = "", ""
	s := u.String()
	p.links.add(link{url: s, want: want, manager: "npm", name: pkg, version: version})
	if rel, ok := strings.CutPrefix(s, p.npmBase+"/"); ok {
		if np, ok := parseNpmPath(rel); ok && np.tarball != "" {
			return wire.NpmRegistryURL + rel
		}
	}
	return "http://" + wire.PackageProxyHost + npmFiles + fileToken(s) + "/" + path.Base(u.EscapedPath())
}
