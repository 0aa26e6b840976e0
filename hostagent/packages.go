// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"fmt"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Guest paths of the package managers install_packages runs (as the sandbox user).
const (
	PipPath   = "/opt/venv/bin/pip"
	NpmPrefix = "/home/sandbox/.npm-global" // npm install -g prefix, writable by sandbox
)

// installer names the package manager of runtime, for messages.
func installer(runtime string) string {
	switch runtime {
	case "python":
		return "pip install"
	case "node":
		return "npm install"
	case "shell":
		return "apt-get install"
	}
	return "install"
}

// installCommand is the argv that installs packages, already checked by
// hostrpc.Limits.CheckInstall for runtime, into an environment of runtime. pip and npm run as
// the sandbox user; apt is the guest's one privileged request (see wire.AptInstallCommand),
// whose names the guest checks again. All fetch from the host's package proxy.
func installCommand(runtime string, packages []string) ([]string, error) {
	var argv []string
	switch runtime {
	case "python":
		argv = []string{PipPath, "install", "--no-input", "--disable-pip-version-check",
			"--index-url", wire.PipIndexURL, "--trusted-host", wire.PackageProxyHost}
	case "node":
		argv = []string{"npm", "install", "-g", "--prefix", NpmPrefix, "--no-fund", "--no-audit",
			"--no-update-notifier", "--registry", wire.NpmRegistryURL}
	case "shell":
		if err := wire.CheckAptPackages(packages); err != nil {
			return nil, err
		}
		argv = []string{wire.AptInstallCommand}
	default:
		return nil, fmt.Errorf("install_packages: no package manager for runtime %q", runtime)
	}
	return append(argv, packages...), nil
}
