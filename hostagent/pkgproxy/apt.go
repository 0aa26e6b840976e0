// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"bufio"
	"compress/gzip"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// aptPathRE is a path of a Debian archive the proxy serves: below dists/ or pool/, of the
// characters archive paths use.
var aptPathRE = regexp.MustCompile(`^(dists|pool)/[A-Za-z0-9._+~-]+(/[A-Za-z0-9._+~-]+)*$`)

// aptPath reads an escaped path below the archive: it must be clean and below dists/ or pool/.
func aptPath(escaped string) (string, bool) {
	rel, err := url.PathUnescape(escaped)
	ok := err == nil && rel == path.Clean(rel) && aptPathRE.MatchString(rel) && !strings.Contains(rel, "..")
	return rel, ok
}

// serveApt serves a file of the Debian archive: rest is its path below the mirror.
func (p *Proxy) serveApt(w http.ResponseWriter, r *http.Request, rest string) {
	rel, ok := aptPath(rest)
	if !ok {
		p.refuse(w, http.StatusNotFound, "%q is not a file of the Debian archive: ask for %s/dists/... or %s/pool/...",
			rest, wire.AptPath, wire.AptPath)
		return
	}
	u := p.aptURL + "/" + rel
	parts := strings.Split(rel, "/")
	l, _ := p.links.get(u) // what a Release or Packages file said of it
	ttl, complete := p.cfg.MetadataTTL, (func(io.ReaderAt, int64))(nil)
	switch {
	case parts[0] == "pool":
		ttl = 0
	case len(parts) < 3:
		p.refuse(w, http.StatusNotFound, "%q is not a file of a suite: ask for %s/dists/<suite>/...", rest, wire.AptPath)
		return
	case len(parts) >= 6 && parts[len(parts)-3] == "by-hash":
		// Named by its own hash: it never changes, and is what its name says.
		ttl, l.want = 0, hexDigest(strings.ToLower(parts[len(parts)-2]), parts[len(parts)-1])
		complete = p.aptIndexReader(parts[1], l.path)
	case len(parts) == 3 && (parts[2] == "InRelease" || parts[2] == "Release"):
		complete = p.aptRelease(parts[1])
	default:
		complete = p.aptIndexReader(parts[1], strings.Join(parts[2:], "/"))
	}
	b, err := p.get(r.Context(), u, u, "", ttl, l.want, p.cfg.MaxFileSize, complete)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	defer b.Close()
	pf := events.PackageFile{File: parts[len(parts)-1]}
	if parts[0] == "pool" && strings.HasSuffix(rel, ".deb") {
		pf.Manager, pf.Name, pf.Version = "apt", l.name, l.version
		if pf.Name == "" {
			pf.Name, pf.Version = debFileVersion(pf.File)
		}
	}
	p.serveFile(w, r, b, pf)
}

// debFileVersion reads name and version from a .deb's file name, name_version_arch.deb.
func debFileVersion(file string) (name, version string) {
	f := strings.Split(strings.TrimSuffix(file, ".deb"), "_")
	if len(f) != 3 {
		return "", ""
	}
	v, err := url.PathUnescape(f[1])
	if err != nil {
		v = f[1]
	}
	return f[0], v
}

// aptRelease reads the SHA256 list of a suite's Release (or InRelease) file and remembers each
// index file it names, under its path and its by-hash path, with that digest.
func (p *Proxy) aptRelease(suite string) func(io.ReaderAt, int64) {
	return func(r io.ReaderAt, size int64) {
		dists := p.aptURL + "/dists/" + suite + "/"
		sc := bufio.NewScanner(io.NewSectionReader(r, 0, size))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		inSHA256 := false
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, " ") {
				inSHA256 = line == "SHA256:"
				continue
			}
			f := strings.Fields(line)
			if !inSHA256 || len(f) != 3 {
				continue
			}
			want := hexDigest("sha256", f[0])
			if want.algo == "" || path.Clean(f[2]) != f[2] || strings.HasPrefix(f[2], "/") || strings.Contains(f[2], "..") {
				continue
			}
			p.links.add(link{url: dists + f[2], want: want, manager: "apt", path: f[2]})
			byHash := dists + path.Dir(f[2]) + "/by-hash/SHA256/" + f[0]
			p.links.add(link{url: byHash, want: want, manager: "apt", path: f[2]})
		}
	}
}

// aptIndexReader returns the reader of a suite's index file at path (below dists/<suite>/):
// for Packages and Packages.gz, one that remembers the pool files they list with their
// SHA256; nil for other files.
func (p *Proxy) aptIndexReader(suite, file string) func(io.ReaderAt, int64) {
	base := path.Base(file)
	if base != "Packages" && base != "Packages.gz" {
		return nil
	}
	return func(r io.ReaderAt, size int64) {
		var src io.Reader = io.NewSectionReader(r, 0, size)
		if base == "Packages.gz" {
			zr, err := gzip.NewReader(src)
			if err != nil {
				p.logger.Warn("apt index unreadable", "suite", suite, "file", file, "err", err)
				return
			}
			src = zr
		}
		n := p.aptPackages(src)
		p.logger.Debug("apt index read", "suite", suite, "file", file, "packages", n)
	}
}

// aptPackages reads a Packages file's stanzas and remembers each pool file with its name,
// version and SHA256. It returns the number of files remembered.
func (p *Proxy) aptPackages(src io.Reader) int {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var name, version, file, sum string
	n := 0
	flush := func() {
		want := hexDigest("sha256", sum)
		if file != "" && want.algo != "" && path.Clean(file) == file && strings.HasPrefix(file, "pool/") && !strings.Contains(file, "..") {
			p.links.add(link{url: p.aptURL + "/" + file, want: want, manager: "apt", name: name, version: version})
			n++
		}
		name, version, file, sum = "", "", "", ""
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			name = v
		case "Version":
			version = v
		case "Filename":
			file = v
		case "SHA256":
			sum = v
		}
	}
	flush()
	return n
}
