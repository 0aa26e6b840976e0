// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// builderVersion changes whenever the builder's output for an unchanged definition changes (the
// finishing steps, the filesystem layout). It is part of every image's hash.
const builderVersion = "waggle-images/2"

// bootstrapVersion changes whenever the shared bootstrap tree is made differently.
const bootstrapVersion = "waggle-bootstrap/1"

// Suite is the Debian release the built-in images are made from.
const Suite = "bookworm"

// DefaultMirror is the Debian archive used when no mirror is configured.
const DefaultMirror = "http://deb.debian.org/debian"

// freeSpace is the free room in every image's filesystem, in bytes. The image file is sparse, so
// the room costs no host disk until a guest writes to its overlay.
const freeSpace = 2 << 30

// defaultPath is the PATH of an image that sets no other.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// bootstrapInclude lists (comma-separated) the packages added to debootstrap's minbase variant;
// every built-in image has them.
const bootstrapInclude = "ca-certificates"

// Definition describes a built-in image: what is installed on top of the shared Debian bootstrap
// (minbase plus ca-certificates) and what runs after that.
type Definition struct {
	// Name is the image's name, as given to Build and Find.
	Name string `json:"name"`
	// Description is one line for `waggle images ls`.
	Description string `json:"description"`
	// Packages are Debian packages installed with apt-get (no recommends).
	Packages []string `json:"packages,omitempty"`
	// Steps run in order as root, chrooted into the image, after the packages are installed.
	Steps []Step `json:"steps,omitempty"`
	// Env is the environment of guest commands, as KEY=VALUE; it must set PATH.
	Env []string `json:"env"`
}

// Step is one named shell script run with `/bin/sh -eu -c` inside the image.
type Step struct {
	Name   string `json:"name"`
	Script string `json:"script"`
}

// Definitions returns the built-in image definitions, base first. Every one points apt at the
// host's package proxy (sources.list), the python image pip (/etc/pip.conf) and the node image
// npm (/etc/npmrc): under the "packages" egress policy the proxy is the guests' only way out.
func Definitions() []Definition {
	return []Definition{
		{
			Name:        "base",
			Description: "minimal Debian " + Suite + ": coreutils, ca-certificates",
			Steps:       []Step{aptSources()},
			Env:         []string{"PATH=" + defaultPath},
		},
		{
			Name:        "python",
			Description: "python3 with pip and a venv at /opt/venv owned by sandbox",
			Packages:    []string{"python3", "python3-pip", "python3-venv"},
			Steps: []Step{{
				Name:   "venv",
				Script: "python3 -m venv /opt/venv\n/opt/venv/bin/python -m pip --version\nchown -R sandbox:sandbox /opt/venv",
			}, {
				Name: "pip-index",
				Script: "printf '[global]\\nindex-url = %s\\ntrusted-host = %s\\ndisable-pip-version-check = true\\n' " +
					wire.PipIndexURL + " " + wire.PackageProxyHost + " >/etc/pip.conf",
			}, aptSources()},
			Env: []string{"PATH=/opt/venv/bin:" + defaultPath, "VIRTUAL_ENV=/opt/venv", "PIP_DISABLE_PIP_VERSION_CHECK=1"},
		},
		{
			Name:        "node",
			Description: "nodejs and npm, global prefix /home/sandbox/.npm-global",
			Packages:    []string{"nodejs", "npm"},
			Steps: []Step{{
				Name: "npm-prefix",
				Script: "install -d -o sandbox -g sandbox /home/sandbox/.npm-global /home/sandbox/.npm-global/bin /home/sandbox/.npm-global/lib\n" +
					"printf 'prefix=/home/sandbox/.npm-global\\nregistry=%s\\naudit=false\\nfund=false\\nupdate-notifier=false\\n' " +
					wire.NpmRegistryURL + " >/etc/npmrc\nnode --version\nnpm --version",
			}, aptSources()},
			Env: []string{"PATH=/home/sandbox/.npm-global/bin:" + defaultPath, "NPM_CONFIG_PREFIX=/home/sandbox/.npm-global", "NPM_CONFIG_UPDATE_NOTIFIER=false"},
		},
		{
			Name:        "shell",
			Description: "bash, coreutils, findutils, curl, jq; apt installs from the package proxy",
			Packages:    []string{"bash", "coreutils", "findutils", "curl", "jq"},
			Steps:       []Step{{Name: "check", Script: "bash --version >/dev/null\ncurl --version >/dev/null\njq --version"}, aptSources()},
			Env:         []string{"PATH=" + defaultPath},
		},
	}
}

// aptSources points apt at the package proxy's Debian archive; it runs last, after the
// image's own packages came from the build's mirror.
func aptSources() Step {
	return Step{Name: "apt-sources", Script: "echo 'deb " + wire.AptMirrorURL + " " + Suite + " main' >/etc/apt/sources.list\n" +
		"rm -f /etc/apt/sources.list.d/*"}
}

// Lookup returns the built-in definition called name.
func Lookup(name string) (Definition, bool) {
	defs := Definitions()
	i := slices.IndexFunc(defs, func(d Definition) bool { return d.Name == name })
	if i < 0 {
		return Definition{}, false
	}
	return defs[i], true
}

// Names returns the names of the built-in images, base first.
func Names() []string {
	var names []string
	for _, d := range Definitions() {
		names = append(names, d.Name)
	}
	return names
}

// Hash is the definition's cache key: a digest of its content, the bootstrap it builds on, the
// free space and the builder version. Equal hashes mean interchangeable images.
func (d Definition) Hash() string {
	return digest(struct {
		Builder    string     `json:"builder"`
		Bootstrap  string     `json:"bootstrap"`
		FreeSpace  int64      `json:"free_space"`
		Definition Definition `json:"definition"`
	}{builderVersion, bootstrapHash(), freeSpace, d})
}

// bootstrapHash keys the shared debootstrap tree that every built-in image starts from.
func bootstrapHash() string {
	return digest(struct {
		Builder  string `json:"builder"`
		Suite    string `json:"suite"`
		Variant  string `json:"variant"`
		Include  string `json:"include"`
		Excludes string `json:"excludes"`
	}{bootstrapVersion, Suite, "minbase", bootstrapInclude, dpkgExcludes})
}

// digest returns the first 16 hex digits of the SHA-256 of v's JSON encoding.
func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("images: hashing %T: %v", v, err)) // plain structs always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
