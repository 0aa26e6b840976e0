// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"fmt"

	"github.com/waggle-dev/waggle/internal/aptname"
)

// The package proxy, as guests reach it. Its name resolves (through the VM's own DNS, answered
// by the shim) to the guest's gateway, where the shim accepts HTTP on PackageProxyPort and
// relays each connection to the host agent's proxy. It is the only destination of the
// "packages" egress policy; under "none" it neither resolves nor answers.
const (
	PackageProxyHost = "packages.waggle.internal"
	PackageProxyPort = 80

	// Paths of the package managers' upstreams on the proxy.
	PyPIPath = "/pypi/simple/" // PEP 503 / PEP 691 simple API: PyPIPath + "<project>/"
	NpmPath  = "/npm/"         // npm registry: NpmPath + "<name>", tarballs below
	AptPath  = "/debian"       // Debian archive: AptPath + "/dists/...", AptPath + "/pool/..."

	// The URLs guest package managers are configured with (the images' pip.conf, npmrc and
	// sources.list).
	PipIndexURL    = "http://" + PackageProxyHost + PyPIPath
	NpmRegistryURL = "http://" + PackageProxyHost + NpmPath
	AptMirrorURL   = "http://" + PackageProxyHost + AptPath
)

// AptInstallCommand is argv[0] of the one privileged request the guest serves: an argv exec
// request ["waggle:apt-install", PACKAGE...] is never looked up on PATH; the guest's SSH server
// checks the names (CheckAptPackages) and runs its own fixed installer as root (apt-get update,
// then apt-get install of exactly those names), with the request's stdin as extra OpenPGP keys
// for apt (at most MaxAptKeys bytes; empty for none). Only the host, which alone holds the SSH
// key, can send it: code in the guest runs as the sandbox user and cannot.
const AptInstallCommand = "waggle:apt-install"

// MaxAptKeys bounds the keys an apt install request carries on stdin.
const MaxAptKeys = 256 << 10

// MaxAptPackages bounds the names of one apt install request.
const MaxAptPackages = 64

// CheckAptPackages reports whether names may be installed with apt: 1 to MaxAptPackages
// Debian package specs (see aptname.Pattern).
func CheckAptPackages(names []string) error {
	if len(names) == 0 || len(names) > MaxAptPackages {
		return fmt.Errorf("give 1 to %d Debian package names, not %d", MaxAptPackages, len(names))
	}
	for _, n := range names {
		if !aptname.Valid(n) {
			return fmt.Errorf("invalid Debian package name %q: use lower-case letters, digits, '+', '-' and '.', optionally =VERSION", n)
		}
	}
	return nil
}
