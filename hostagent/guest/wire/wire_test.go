// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"errors"
	"slices"
	"testing"
)

func TestArgvRoundTrip(t *testing.T) {
	tests := [][]string{
		{"true"},
		{"printf", "%s", "a b", "", `it's "q"`, "$(x)", "\n"},
		{"/bin/sh", "-c", "exit 3"},
		{"x", ""},
	}
	for _, argv := range tests {
		p, err := EncodeArgv(argv)
		if err != nil {
			t.Fatalf("EncodeArgv(%q): %v", argv, err)
		}
		got, cmd, isArgv, err := DecodeExec(p)
		if err != nil || !isArgv || cmd != "" || !slices.Equal(got, argv) {
			t.Fatalf("DecodeExec(EncodeArgv(%q)) = %q %q %v %v", argv, got, cmd, isArgv, err)
		}
	}
}

func TestEncodeArgvRejects(t *testing.T) {
	for _, argv := range [][]string{nil, {}, {""}, {"", "x"}, {"a\x00b"}, {"ok", "bad\x00"}} {
		if _, err := EncodeArgv(argv); !errors.Is(err, ErrBadArgv) {
			t.Errorf("EncodeArgv(%q): err %v, want ErrBadArgv", argv, err)
		}
	}
}

func TestDecodeShellCommand(t *testing.T) {
	for _, c := range []string{"", "echo hi", "a\x00b"} {
		argv, cmd, isArgv, err := DecodeExec(c)
		if err != nil || isArgv || argv != nil || cmd != c {
			t.Errorf("DecodeExec(%q) = %q %q %v %v", c, argv, cmd, isArgv, err)
		}
	}
	if _, _, _, err := DecodeExec("\x00\x00x"); !errors.Is(err, ErrBadArgv) {
		t.Errorf("empty program name: err %v", err)
	}
}

func FuzzDecodeExec(f *testing.F) {
	f.Add("echo hi")
	f.Add("\x00true")
	f.Add("\x00printf\x00%s\x00\x00a b")
	f.Add("\x00")
	f.Fuzz(func(t *testing.T, payload string) {
		argv, cmd, isArgv, err := DecodeExec(payload)
		if !isArgv {
			if err != nil || cmd != payload {
				t.Fatalf("shell payload changed: %q -> %q %v", payload, cmd, err)
			}
			return
		}
		if err != nil {
			return
		}
		if len(argv) == 0 || argv[0] == "" {
			t.Fatalf("accepted empty program: %q", argv)
		}
		again, err := EncodeArgv(argv)
		if err != nil || again != payload {
			t.Fatalf("re-encoding %q gave %q %v, want %q", argv, again, err, payload)
		}
	})
}
