// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Program requests. An "exec" request whose payload EncodeProgram made runs a program: the
// guest saves its source to a private file, executes the interpreter argv with the file's path
// as its last argument, and removes the file once the command has ended. So code of any size
// runs in one spawn, without a shell around the interpreter and without the interpreter
// reading its program from the stdin its commands may read.
//
// A source of at most MaxInlineProgramBytes travels in the request itself: the guest starts
// the interpreter before it answers, with the session's stdin as the command's, as for an
// argv request, so the call costs no round trip more than `true`. A larger one (at most
// MaxProgramBytes) follows on the session's stdin, which the guest reads to its end before it
// starts the interpreter with an empty stdin.
const (
	// programPrefix starts a program payload: NUL NUL, then the interpreter argv separated by
	// NUL. An argv payload (EncodeArgv) never starts so (its program name is not empty), and a
	// shell command line contains no NUL.
	programPrefix = argvPrefix + "\x00"
	// inlinePrefix starts a program payload that carries its source: NUL NUL NUL, the source's
	// length in decimal, NUL, the source, then the interpreter argv separated by NUL. A
	// program payload of the other kind never starts so (its interpreter name is not empty).
	inlinePrefix = programPrefix + "\x00"
	// MaxProgramBytes bounds the source of one program request.
	MaxProgramBytes = 8 << 20
	// MaxInlineProgramBytes bounds a source sent in the request: well within the SSH packet
	// size both sides accept (256 KiB).
	MaxInlineProgramBytes = 64 << 10
)

// Program is a decoded program request.
type Program struct {
	// Interp is the interpreter and its arguments; the source file's path is appended.
	Interp []string
	// Source is the program's source, if it came in the request (Inline).
	Source []byte
	// Inline is set when the request carried the source; otherwise it follows on stdin.
	Inline bool
}

// EncodeProgram encodes interp (the interpreter and its arguments) and src as the payload of
// an "exec" request. inline reports whether src is in the payload; if not, the caller sends it
// on the session's stdin.
func EncodeProgram(interp []string, src []byte) (payload string, inline bool, err error) {
	p, err := EncodeArgv(interp)
	if err != nil {
		return "", false, err
	}
	if len(src) > MaxInlineProgramBytes {
		return argvPrefix + p, false, nil
	}
	return inlinePrefix + strconv.Itoa(len(src)) + "\x00" + string(src) + strings.TrimPrefix(p, argvPrefix), true, nil
}

// DecodeProgram decodes an "exec" payload made by EncodeProgram; ok is false for any other
// payload (which DecodeExec reads).
func DecodeProgram(payload string) (prog Program, ok bool, err error) {
	if rest, ok := strings.CutPrefix(payload, inlinePrefix); ok {
		size, rest, _ := strings.Cut(rest, "\x00")
		n, err := strconv.Atoi(size)
		if err != nil || n < 0 || n > MaxInlineProgramBytes || n > len(rest) || strconv.Itoa(n) != size {
			return Program{}, true, fmt.Errorf("%w: bad source length %q", ErrBadArgv, size)
		}
		prog = Program{Source: []byte(rest[:n]), Inline: true}
		payload = programPrefix + rest[n:]
	}
	rest, ok := strings.CutPrefix(payload, programPrefix)
	if !ok {
		return Program{}, false, nil
	}
	prog.Interp = strings.Split(rest, "\x00")
	if prog.Interp[0] == "" {
		return Program{}, true, fmt.Errorf("%w: empty interpreter name", ErrBadArgv)
	}
	return prog, true, nil
}
