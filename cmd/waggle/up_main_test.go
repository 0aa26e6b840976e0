// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// testBins is where TestMain's temporary directory holds the waggle and waggle-init binaries
// that end-to-end tests run as separate processes; they are built on first use, once per
// test binary.
var testBins struct {
	dir  string
	once sync.Once
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "waggle-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBins.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// builtWaggle builds (once) the static waggle and waggle-init binaries side by side, so that
// `waggle up` finds waggle-init beside itself, and returns the path of waggle.
func builtWaggle(t testing.TB) string {
	t.Helper()
	testBins.once.Do(func() {
		for _, b := range []struct{ out, pkg string }{
			{"waggle", "github.com/waggle-dev/waggle/cmd/waggle"},
			{"waggle-init", "github.com/waggle-dev/waggle/cmd/waggle-init"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(testBins.dir, b.out), b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				testBins.err = fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if testBins.err != nil {
		t.Fatal(testBins.err)
	}
	return filepath.Join(testBins.dir, "waggle")
}
