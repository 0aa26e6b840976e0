// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// PEP 691 content types, and the Accept header pip sends (JSON preferred).
const (
	pypiJSON   = "application/vnd.pypi.simple.v1+json"
	pypiHTML   = "application/vnd.pypi.simple.v1+html"
	acceptJSON = pypiJSON + ", " + pypiHTML + ";q=0.2, text/html;q=0.01"
	acceptHTML = pypiHTML + ", text/html;q=0.01"
)

var (
	// pypiNameRE is a project name as PEP 508 allows it.
	pypiNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,198}[A-Za-z0-9])?$`)
	// pypiSeparators are the runs PEP 503 normalization folds into one '-'.
	pypiSeparators = regexp.MustCompile(`[-_.]+`)
)

// servePyPIIndex serves a project page of the simple API: rest is "<project>/".
func (p *Proxy) servePyPIIndex(w http.ResponseWriter, r *http.Request, rest string) {
	raw, tail, slash := strings.Cut(rest, "/")
	name, err := url.PathUnescape(raw)
	switch {
	case raw == "":
		p.refuse(w, http.StatusNotFound, "the list of all projects is not served: ask for %s<project>/", wire.PyPIPath)
		return
	case err != nil || tail != "" || !pypiNameRE.MatchString(name):
		p.refuse(w, http.StatusNotFound, "%q is not a project page: ask for %s<project>/", rest, wire.PyPIPath)
		return
	}
	project := strings.ToLower(pypiSeparators.ReplaceAllString(name, "-"))
	if project != name || !slash {
		// PEP 503: the normalized name is the page's one URL.
		http.Redirect(w, r, wire.PyPIPath+project+"/", http.StatusMovedPermanently)
		return
	}
	pageURL := p.pypiBase + "/" + project + "/"
	key, accept := pageURL+"#html", acceptHTML
	if strings.Contains(r.Header.Get("Accept"), pypiJSON) {
		key, accept = pageURL+"#json", acceptJSON
	}
	p.serveIndex(w, r, key, pageURL, accept, func(ct string, data []byte) ([]byte, string, error) {
		if strings.Contains(ct, "json") {
			data, err := p.rewritePyPIJSON(pageURL, project, data)
			return data, ct, err
		}
		if !strings.Contains(ct, "html") {
			ct = "text/html; charset=utf-8"
		}
		data, err := p.rewritePyPIHTML(pageURL, project, data)
		return data, ct, err
	})
}

// pypiFile resolves a file link of a project page and remembers it: the file's URL (without
// fragment), and its metadata file's (PEP 658) when meta says there is one ("true" or
// "sha256=HEX"). It returns the proxy's path for the file, or "" for a link it does not serve.
func (p *Proxy) pypiFile(page *url.URL, project, href string, want digest, meta string) string {
	u, err := page.Parse(href)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	u.Fragment, u.RawFragment = "", ""
	file := path.Base(u.EscapedPath())
	if file == "/" || file == "." {
		return ""
	}
	name, _ := url.PathUnescape(file)
	_, version := pypiFileVersion(name)
	fileURL := u.String()
	p.links.add(link{url: fileURL, want: want, manager: "pip", name: project, version: version})
	if meta != "" && meta != "false" {
		var md digest
		if algo, sum, ok := strings.Cut(meta, "="); ok {
			md = hexDigest(algo, sum)
		}
		p.links.add(link{url: fileURL + ".metadata", want: md, manager: "pip", name: project, version: version})
	}
	return pypiFiles + fileToken(fileURL) + "/" + file
}

// fragmentDigest reads a PEP 503 link fragment ("sha256=HEX"): the digest if its hash is one
// the proxy checks.
func fragmentDigest(fragment string) digest {
	algo, sum, ok := strings.Cut(fragment, "=")
	if !ok {
		return digest{}
	}
	return hexDigest(algo, sum)
}

// rewritePyPIHTML points the file links of a PEP 503 page at the proxy, keeping their hash
// fragments; every other byte of the page stays as it was.
func (p *Proxy) rewritePyPIHTML(pageURL, project string, data []byte) ([]byte, error) {
	page, err := url.Parse(pageURL)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	z := html.NewTokenizer(bytes.NewReader(data))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if errors.Is(z.Err(), io.EOF) {
				return out.Bytes(), nil
			}
			return nil, z.Err()
		}
		raw := z.Raw()
		if tt != html.StartTagToken {
			out.Write(raw)
			continue
		}
		tok := z.Token()
		if tok.DataAtom != atom.A {
			out.Write(raw)
			continue
		}
		href, meta := -1, ""
		for i, a := range tok.Attr {
			switch a.Key {
			case "href":
				href = i
			case "data-core-metadata", "data-dist-info-metadata":
				meta = a.Val
			}
		}
		if href < 0 {
			out.Write(raw)
			continue
		}
		_, fragment, _ := strings.Cut(tok.Attr[href].Val, "#")
		proxied := p.pypiFile(page, project, tok.Attr[href].Val, fragmentDigest(fragment), meta)
		if proxied == "" {
			out.Write(raw)
			continue
		}
		if fragment != "" {
			proxied += "#" + fragment
		}
		tok.Attr[href].Val = proxied
		out.WriteString(tok.String())
	}
}

// rewritePyPIJSON points the file URLs of a PEP 691 page at the proxy.
func (p *Proxy) rewritePyPIJSON(pageURL, project string, data []byte) ([]byte, error) {
	page, err := url.Parse(pageURL)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var files []map[string]json.RawMessage
	if raw, ok := doc["files"]; ok {
		if err := json.Unmarshal(raw, &files); err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
	}
	for _, f := range files {
		var href string
		var hashes map[string]string
		if err := json.Unmarshal(f["url"], &href); err != nil {
			continue
		}
		_ = json.Unmarshal(f["hashes"], &hashes)
		want := hexDigest("sha256", hashes["sha256"])
		proxied := p.pypiFile(page, project, href, want, pep691Metadata(f))
		if proxied == "" {
			continue
		}
		f["url"], _ = json.Marshal(proxied)
	}
	if files != nil {
		if doc["files"], err = json.Marshal(files); err != nil {
			return nil, err
		}
	}
	return json.Marshal(doc)
}

// pep691Metadata reads a file's core-metadata (or the older dist-info-metadata) key: true, or
// hashes of the metadata file, in the form pypiFile takes.
func pep691Metadata(f map[string]json.RawMessage) string {
	for _, k := range []string{"core-metadata", "dist-info-metadata", "data-dist-info-metadata"} {
		raw, ok := f[k]
		if !ok {
			continue
		}
		var yes bool
		if json.Unmarshal(raw, &yes) == nil {
			return strconv.FormatBool(yes)
		}
		var hashes map[string]string
		if json.Unmarshal(raw, &hashes) == nil {
			if h, ok := hashes["sha256"]; ok {
				return "sha256=" + h
			}
			return "true"
		}
	}
	return ""
}

// pypiFileVersion reads the project and version from a distribution's file name: a wheel
// (name-version-[build-]python-abi-platform.whl) or an sdist (name-version.tar.gz, .zip).
func pypiFileVersion(file string) (name, version string) {
	if base, ok := strings.CutSuffix(file, ".whl"); ok {
		parts := strings.Split(base, "-")
		if len(parts) >= 5 {
			return parts[0], parts[1]
		}
		return "", ""
	}
	for _, ext := range []string{".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz"} {
		if base, ok := strings.CutSuffix(file, ext); ok {
			if i := strings.LastIndexByte(base, '-'); i > 0 {
				return base[:i], base[i+1:]
			}
		}
	}
	return "", ""
}

// serveTokenFile serves "<token>/<file>": a file an index page linked to (see fileToken),
// checked against the digest it gave, or one still in the cache.
func (p *Proxy) serveTokenFile(w http.ResponseWriter, r *http.Request, rest, manager string) {
	token, file, _ := strings.Cut(rest, "/")
	l, ok := p.links.byToken(token)
	if !ok {
		var key string
		if key, ok = p.cache.keyOfToken(token); ok {
			l = link{url: key, manager: manager}
		}
	}
	name, err := url.PathUnescape(file)
	if !ok || l.manager != manager || err != nil || file == "" || strings.Contains(file, "/") {
		p.refuse(w, http.StatusNotFound, "unknown file %q: the proxy serves the files its index pages link to; ask for the index first", rest)
		return
	}
	b, err := p.get(r.Context(), l.url, l.url, "", 0, l.want, p.cfg.MaxFileSize, nil)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	defer b.Close()
	pf := events.PackageFile{Manager: manager, Name: l.name, Version: l.version, File: name}
	if pf.Name == "" {
		pf.Name, pf.Version = pypiFileVersion(name)
	}
	if strings.HasSuffix(name, ".metadata") {
		pf.Manager = "" // not a package file: served, not recorded
	}
	p.serveFile(w, r, b, pf)
}
