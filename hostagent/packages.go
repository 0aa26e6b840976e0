// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"fmt"
)

// Guest paths of the package managers install_packages runs (as the sandbox user).
const (
	PipPath   = "/opt/venv/bin/pip"
	NpmPrefix = "/home/sandbox/.npm-global" // npm install -g prefix, writable by sandbox
)

// installCommand is the argv that installs packages, already checked by
// hostrpc.Limits.CheckInstall for runtime, into an environment of runtime.
func installCommand(runtime string, packages []string) ([]string, error) {
	var argv []string
	switch runtime {
	case "python":
		argv = []string{PipPath, "install", "--no-input", "--disable-pip-version-check"}
	case "node":
		argv = []string{"npm", "install", "-g", "--prefix", NpmPrefix, "--no-fund", "--no-audit"}
	default:
		return nil, fmt.Errorf("install_packages: no package manager for runtime %q", runtime)
	}
	return append(argv, packages...), nil
}
