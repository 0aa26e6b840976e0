// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestProgramRoundTrip(t *testing.T) {
	big := []byte(strings.Repeat("x", MaxInlineProgramBytes+1))
	for _, interp := range [][]string{{"bash"}, {"/opt/venv/bin/python", "-u"}, {"node", "", "x y"}} {
		for _, src := range [][]byte{nil, []byte("echo hi\n"), []byte("a\x00b\x00\x00"), big[:MaxInlineProgramBytes], big} {
			p, inline, err := EncodeProgram(interp, src)
			if err != nil {
				t.Fatalf("EncodeProgram(%q): %v", interp, err)
			}
			if want := len(src) <= MaxInlineProgramBytes; inline != want {
				t.Fatalf("EncodeProgram(%q, %d bytes): inline %v, want %v", interp, len(src), inline, want)
			}
			got, ok, err := DecodeProgram(p)
			if err != nil || !ok || !slices.Equal(got.Interp, interp) || got.Inline != inline {
				t.Fatalf("DecodeProgram(EncodeProgram(%q)) = %+v %v %v", interp, got, ok, err)
			}
			if inline && !bytes.Equal(got.Source, src) {
				t.Fatalf("source of %d bytes came back as %d bytes", len(src), len(got.Source))
			}
			// An argv decoder never takes a program payload for a command it could run.
			if argv, _, isArgv, err := DecodeExec(p); err == nil || !isArgv || argv != nil {
				t.Fatalf("DecodeExec of a program payload: %q %v %v, want an error", argv, isArgv, err)
			}
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
		{"\x00\x00\x00sh", true, true}, // no source length
		{"\x00\x00sh\x00-e", true, false},
		{"\x00\x00\x002\x00hibash", true, false},
		{"\x00\x00\x002\x00hi", true, true},         // no interpreter
		{"\x00\x00\x009\x00hibash", true, true},     // longer than the payload
		{"\x00\x00\x0002\x00hibash", true, true},    // not canonical
		{"\x00\x00\x00-1\x00hibash", true, true},    // negative
		{"\x00\x00\x00+2\x00hibash", true, true},    // not canonical
		{"\x00\x00\x00999999\x00hi", true, true},    // over the inline limit
		{"\x00\x00\x002\x00hi\x00bash", true, true}, // empty interpreter name
	}
	for _, tt := range tests {
		_, ok, err := DecodeProgram(tt.payload)
		if ok != tt.ok || (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrBadArgv)) {
			t.Errorf("DecodeProgram(%q): ok %v err %v, want ok %v err %v", tt.payload, ok, err, tt.ok, tt.err)
		}
	}
	if _, _, err := EncodeProgram(nil, nil); !errors.Is(err, ErrBadArgv) {
		t.Errorf("EncodeProgram(nil): %v, want ErrBadArgv", err)
	}
}

func FuzzDecodeProgram(f *testing.F) {
	for _, s := range []string{"", "echo", "\x00\x00bash", "\x00\x00", "\x00bash\x00-c", "\x00\x00\x002\x00hibash\x00-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		prog, ok, err := DecodeProgram(payload)
		if !ok || err != nil {
			return
		}
		var again string
		if prog.Inline {
			again, _, err = EncodeProgram(prog.Interp, prog.Source)
		} else {
			again, err = EncodeArgv(prog.Interp)
			again = argvPrefix + again
		}
		if err != nil || again != payload {
			t.Fatalf("DecodeProgram(%q) = %+v, which encodes to %q (%v)", payload, prog, again, err)
		}
	})
}
