// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"errors"
	"slices"
	"testing"
)

func TestProgramRoundTrip(t *testing.T) {
	for _, interp := range [][]string{{"bash"}, {"/opt/venv/bin/python", "-u"}, {"node", "", "x y"}} {
		p, err := EncodeProgram(interp)
		if err != nil {
			t.Fatalf("EncodeProgram(%q): %v", interp, err)
		}
		got, ok, err := DecodeProgram(p)
		if err != nil || !ok || !slices.Equal(got, interp) {
			t.Fatalf("DecodeProgram(EncodeProgram(%q)) = %q %v %v", interp, got, ok, err)
		}
		// An argv decoder never takes a program payload for a command it could run.
		if argv, _, isArgv, err := DecodeExec(p); err == nil || !isArgv || argv != nil {
			t.Fatalf("DecodeExec of a program payload: %q %v %v, want an error", argv, isArgv, err)
		}
	}
}

func TestDecodeProgram(t *testing.T) {
	argv, _ := EncodeArgv([]string{"bash", "-c", "true"})
	tests := []struct {
		payload string
		ok      bool
		err     bool
	}{
		{"echo hi", false, false},      // a shell command line
		{argv, false, false},           // an argv request
		{"\x00\x00", true, true},       // no interpreter
		{"\x00\x00\x00sh", true, true}, // empty interpreter name
		{"\x00\x00sh\x00-e", true, false},
	}
	for _, tt := range tests {
		_, ok, err := DecodeProgram(tt.payload)
		if ok != tt.ok || (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrBadArgv)) {
			t.Errorf("DecodeProgram(%q): ok %v err %v, want ok %v err %v", tt.payload, ok, err, tt.ok, tt.err)
		}
	}
	if _, err := EncodeProgram(nil); !errors.Is(err, ErrBadArgv) {
		t.Errorf("EncodeProgram(nil): %v, want ErrBadArgv", err)
	}
}

func FuzzDecodeProgram(f *testing.F) {
	for _, s := range []string{"", "echo", "\x00\x00bash", "\x00\x00", "\x00bash\x00-c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		interp, ok, err := DecodeProgram(payload)
		if !ok || err != nil {
			return
		}
		again, err := EncodeProgram(interp)
		if err != nil || again != payload {
			t.Fatalf("DecodeProgram(%q) = %q, which encodes to %q (%v)", payload, interp, again, err)
		}
	})
}
