// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestConsoleLines(t *testing.T) {
	k, _ := testKey(t)
	hostKey := HostKeyLine(k)
	if !strings.HasPrefix(hostKey, HostKeyMarker+" ssh-ed25519 ") || strings.ContainsAny(hostKey, "\r\n") {
		t.Fatalf("host key line %q", hostKey)
	}
	failed := FailedLine("mount-root", errors.New(`no "disk"`))
	if failed != `WAGGLE-FAILED stage=mount-root err="no \"disk\""` {
		t.Fatalf("failed line %q", failed)
	}
	tests := []struct {
		line string
		kind ConsoleKind
	}{
		{ReadyMarker, ConsoleReady},
		{ReadyMarker + "\r", ConsoleReady},
		{"  " + hostKey + "\r\n", ConsoleHostKey},
		{failed, ConsoleFailed},
		{"", ConsoleOther},
		{"not " + ReadyMarker, ConsoleOther},
		{ReadyMarker + "x", ConsoleOther},
		{HostKeyMarker, ConsoleOther},
		{HostKeyMarker + " garbage", ConsoleOther},
		{"x " + hostKey, ConsoleOther},
		{FailedMarker, ConsoleOther},
	}
	for _, tt := range tests {
		got := ParseConsoleLine(tt.line)
		if got.Kind != tt.kind {
			t.Errorf("ParseConsoleLine(%q) = %v, want %v", tt.line, got.Kind, tt.kind)
		}
		if tt.kind == ConsoleHostKey && string(got.HostKey.Marshal()) != string(k.Marshal()) {
			t.Errorf("ParseConsoleLine(%q): key differs", tt.line)
		}
	}
}

func FuzzParseConsoleLine(f *testing.F) {
	k, _ := testKey(f)
	f.Add(HostKeyLine(k))
	f.Add(ReadyMarker + "\r")
	f.Add(FailedLine("x", errors.New("y")))
	f.Add(HostKeyMarker + " ssh-ed25519 AAAA")
	f.Fuzz(func(t *testing.T, line string) {
		got := ParseConsoleLine(line)
		switch got.Kind {
		case ConsoleHostKey:
			if got.HostKey == nil || ParseConsoleLine(HostKeyLine(got.HostKey)).Kind != ConsoleHostKey {
				t.Fatalf("host key line %q does not round-trip", line)
			}
		case ConsoleReady:
			if strings.TrimSpace(line) != ReadyMarker {
				t.Fatalf("%q taken for the ready marker", line)
			}
		case ConsoleFailed:
			if !strings.HasPrefix(strings.TrimSpace(line), FailedMarker+" ") {
				t.Fatalf("%q taken for a failure", line)
			}
		}
	})
}
