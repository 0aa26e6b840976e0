// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestEnvAllowed(t *testing.T) {
	allow := DefaultConfig().EnvAllow
	tests := []struct {
		name string
		want bool
	}{
		{"LANG", true}, {"LC_ALL", true}, {"TZ", true}, {"PYTHONPATH", true}, {"NODE_OPTIONS", true},
		{"PATH", false}, {"HOME", false}, {"USER", false}, {"LD_PRELOAD", false}, {"WAGGLE_X", false},
		{"", false}, {"LC_A=B", false}, {"LANGX", false}, {"lang", false},
	}
	for _, tt := range tests {
		if got := envAllowed(allow, tt.name); got != tt.want {
			t.Errorf("envAllowed(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	plain := filepath.Join(dir, "data")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{exe, 0o755}, {plain, 0o644}} {
		if err := os.WriteFile(f.path, []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	path := "/nonexistent:" + dir
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"tool", exe, true},
		{"data", "", false},
		{"missing", "", false},
		{exe, exe, true},
		{"./tool", exe, true},
		{plain, "", false},
		{dir, "", false},
	}
	for _, tt := range tests {
		got, err := lookPath(tt.name, path, dir)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("lookPath(%q) = %q, %v; want %q ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestSignalNames(t *testing.T) {
	for _, s := range knownSignals() {
		sig, ok := signalByName(s.name)
		if !ok || sig != s.sig {
			t.Errorf("signalByName(%q) = %v %v", s.name, sig, ok)
		}
		if name, ok := signalName(s.sig); !ok || name != s.name {
			t.Errorf("signalName(%v) = %q %v", s.sig, name, ok)
		}
	}
	if _, ok := signalByName("SIGTERM"); ok {
		t.Error("SSH signal names have no SIG prefix")
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		script string
		want   exitStatus
	}{
		{"exit 0", exitStatus{code: 0}},
		{"exit 42", exitStatus{code: 42}},
		{"kill -TERM $$", exitStatus{code: 128 + int(syscall.SIGTERM), signal: "TERM"}},
		{"kill -WINCH $$; kill -KILL $$", exitStatus{code: 128 + int(syscall.SIGKILL), signal: "KILL"}},
	}
	for _, tt := range tests {
		cmd := exec.Command("sh", "-c", tt.script)
		err := cmd.Run()
		if got := statusOf(cmd.ProcessState, err); got != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.script, got, tt.want)
		}
	}
	if got := statusOf(nil, nil); got.code != 255 {
		t.Errorf("no state: %+v", got)
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(DefaultConfig()); err == nil || !strings.Contains(err.Error(), "authorized key") {
		t.Fatalf("New without keys: %v", err)
	}
}
