// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"fmt"
	"strings"
)

// Program requests. An "exec" request whose payload EncodeProgram made runs a program whose
// source follows on the session's stdin: the guest reads stdin to its end (at most
// MaxProgramBytes) into a private file, then executes the interpreter argv with the file's
// path as its last argument and an empty stdin, and removes the file once the command has
// ended. So code of any size runs in one spawn, without a shell around the interpreter and
// without the interpreter reading its program from the stdin its commands may read.
const (
	// programPrefix starts a program payload: NUL NUL, then the interpreter argv separated by
	// NUL. An argv payload (EncodeArgv) never starts so (its program name is not empty), and a
	// shell command line contains no NUL.
	programPrefix = argvPrefix + "\x00"
	// MaxProgramBytes bounds the source of one program request.
	MaxProgramBytes = 8 << 20
)

// EncodeProgram encodes interp (the interpreter and its arguments) as the payload of an
// "exec" request that runs the program sent on stdin.
func EncodeProgram(interp []string) (string, error) {
	p, err := EncodeArgv(interp)
	if err != nil {
		return "", err
	}
	return argvPrefix + p, nil
}

// DecodeProgram decodes an "exec" payload made by EncodeProgram; ok is false for any other
// payload (which DecodeExec reads).
func DecodeProgram(payload string) (interp []string, ok bool, err error) {
	rest, ok := strings.CutPrefix(payload, programPrefix)
	if !ok {
		return nil, false, nil
	}
	interp = strings.Split(rest, "\x00")
	if interp[0] == "" {
		return nil, true, fmt.Errorf("%w: empty interpreter name", ErrBadArgv)
	}
	return interp, true, nil
}
