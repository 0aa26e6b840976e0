// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package pkgproxy is a host's package proxy: the only way out of a guest under the
// "packages" egress policy. It serves plain HTTP to guests (relayed by each VM's shim, see
// DialVM) and fetches over HTTPS, with the host's trust store, from configured upstreams:
//
//   - PyPI's simple API (PEP 503 HTML and PEP 691 JSON) at wire.PyPIPath, with every file link
//     rewritten to the proxy, and the files;
//   - the npm registry at wire.NpmPath: package documents with their tarball URLs rewritten,
//     and the tarballs;
//   - a Debian archive at wire.AptPath: dists/ (InRelease, Release, Packages, by-hash) and
//     pool/.
//
// It only reads: GET and HEAD of those paths of the configured upstreams, never another host
// (a file link is served only if an index page it served named it), no CONNECT, no
// absolute-URL proxying, no publishing. Responses are kept in a bounded LRU cache on disk,
// shared by all VMs of the host and keyed by upstream URL: index pages for a short time, files
// until evicted. A file is verified against the hash its index gave (PEP 503 #sha256=
// fragments, PEP 691 hashes, npm dist.integrity or dist.shasum, the SHA256 of Release and
// Packages) before it is kept; concurrent fetches of one URL share a single upstream request.
// Record collects the package files a VM fetched, for the audit event of an install.
package pkgproxy
