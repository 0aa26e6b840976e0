// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// TestVMRun runs `waggle vm run` end to end: a real VM from the built base image.
func TestVMRun(t *testing.T) {
	bins := vmtest.Build(t)
	vmtest.Image(t, "base")
	cache := vmtest.CacheDir(t)
	if filepath.Base(cache) != "cache" {
		t.Skipf("test cache %s is not DATA_DIR/cache", cache)
	}
	tests := []struct {
		name           string
		argv           []string
		stdout, stderr string
		code           int
	}{
		{"exit code and streams", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "out\n", "err\n", 3},
		{"argv kept apart", []string{"printf", "[%s]", "a b", `c'd"e`}, `[a b][c'd"e]`, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"vm", "run", "--data-dir", filepath.Dir(cache), "--image", "base", "--"}, tt.argv...)
			cmd := exec.Command(bins.Waggle, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("exit %d stdout %q stderr %q, want %d %q %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestVMPrepareTemplates runs `waggle vm prepare --image base` twice: the second finds the
// template the first made (or found) up to date.
func TestVMPrepareTemplates(t *testing.T) {
	bins := vmtest.Build(t)
	vmtest.Image(t, "base")
	cache := vmtest.CacheDir(t)
	if filepath.Base(cache) != "cache" {
		t.Skipf("test cache %s is not DATA_DIR/cache", cache)
	}
	prepare := func() string {
		t.Helper()
		out, err := exec.Command(bins.Waggle, "vm", "prepare", "--data-dir", filepath.Dir(cache), "--init", bins.Init,
			"--image", "base", "--memory", "256").Output()
		if err != nil {
			t.Fatalf("vm prepare: %v\n%s", err, out)
		}
		return string(out)
	}
	first := prepare()
	if !strings.Contains(first, "template base (1 CPU, 256 MiB): ") {
		t.Fatalf("output %q", first)
	}
	if second := prepare(); !strings.Contains(second, "template base (1 CPU, 256 MiB): up to date") {
		t.Errorf("second run: %q", second)
	}
	if _, err := exec.Command(bins.Waggle, "vm", "prepare", "--data-dir", filepath.Dir(cache), "--init", bins.Init,
		"--image", "no-such-image").Output(); err == nil {
		t.Error("prepare of an unknown image succeeded")
	}
}
