// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"fmt"
	"regexp"
)

// Guest paths of the package managers install_packages runs (as the sandbox user).
const (
	PipPath   = "/opt/venv/bin/pip"
	NpmPrefix = "/home/sandbox/.npm-global" // npm install -g prefix, writable by sandbox
)

// Package name patterns: a name starts with a letter or digit (never '-', so it cannot be read
// as an option), then an optional extra or version spec; no whitespace or shell characters.
var (
	pipPackage = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?` +
		`(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?` +
		`((===|==|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+(,(===|==|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+)*)?$`)
	npmPackage = regexp.MustCompile(`^(@[a-z0-9][a-z0-9._~-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*` +
		`(@[A-Za-z0-9.^~<>=*+_-]+)?$`)
)

// maxPackageName bounds one package argument.
const maxPackageName = 214

// maxPackages bounds one install request.
const maxPackages = 64

// installCommand is the argv that installs packages into an environment of runtime, or an
// error a user can act on.
func installCommand(runtime string, packages []string) ([]string, error) {
	if len(packages) == 0 {
		return nil, fmt.Errorf("packages is required")
	}
	if len(packages) > maxPackages {
		return nil, fmt.Errorf("at most %d packages per call, got %d", maxPackages, len(packages))
	}
	var argv []string
	var pattern *regexp.Regexp
	switch runtime {
	case "python":
		argv, pattern = []string{PipPath, "install", "--no-input", "--disable-pip-version-check"}, pipPackage
	case "node":
		argv, pattern = []string{"npm", "install", "-g", "--prefix", NpmPrefix, "--no-fund", "--no-audit"}, npmPackage
	case "shell":
		return nil, fmt.Errorf("install_packages is not available in shell environments: apt needs root and code runs as the unprivileged sandbox user; use a python (pip) or node (npm) environment")
	default:
		return nil, fmt.Errorf("install_packages does not know runtime %q", runtime)
	}
	for _, p := range packages {
		if len(p) > maxPackageName || !pattern.MatchString(p) {
			return nil, fmt.Errorf("invalid %s package name %q", runtime, p)
		}
	}
	return append(argv, packages...), nil
}
