// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package wire is the whole contract between the host (hostagent/vm, its shim and
// hostagent/guestclient) and the guest's init (hostagent/guest): the kernel command line
// (cmdline.go), the addresses of the VM's private network and the SSH port (network.go), the
// console markers (console.go), the SSH request names, the encoding of argv exec requests, and
// the identity request a restored guest gets (identity.go). Both sides import it, and every
// parser in it is fuzzed, so the two never drift apart.
package wire

import (
	"errors"
	"fmt"
	"strings"
)

// SSH protocol names.
const (
	// User is the SSH user name the client logs in as. Commands always run as the guest's sandbox
	// user, whatever name is sent.
	User = "sandbox"
	// PowerOffRequest is a global SSH request: the guest replies true, then powers off.
	PowerOffRequest = "waggle-poweroff"
	// SFTPSubsystem is the subsystem name of the SFTP server.
	SFTPSubsystem = "sftp"
	// DirEnv is an "env" request the guest consumes itself: the working directory of the command
	// (default: the sandbox user's home). It is not passed to the command.
	DirEnv = "WAGGLE_DIR"
)

// argvPrefix marks an exec request that carries an argv vector instead of a shell command line.
// A shell command line can never contain NUL, so the encoding cannot be confused with one.
const argvPrefix = "\x00"

// ErrBadArgv reports an argv that cannot be encoded: empty, an empty program name, or an argument
// containing NUL.
var ErrBadArgv = errors.New("invalid argv")

// EncodeArgv encodes argv as the payload of an "exec" request: NUL, then the arguments separated
// by NUL. The guest executes such a request directly (PATH lookup of argv[0], no shell); any other
// exec payload is run with `/bin/sh -c`.
func EncodeArgv(argv []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", fmt.Errorf("%w: empty program name", ErrBadArgv)
	}
	for i, a := range argv {
		if strings.Contains(a, "\x00") {
			return "", fmt.Errorf("%w: argument %d contains NUL", ErrBadArgv, i)
		}
	}
	return argvPrefix + strings.Join(argv, "\x00"), nil
}

// DecodeExec decodes the payload of an "exec" request. For an argv request it returns the vector
// and isArgv true; otherwise it returns the shell command line unchanged in command.
func DecodeExec(payload string) (argv []string, command string, isArgv bool, err error) {
	rest, ok := strings.CutPrefix(payload, argvPrefix)
	if !ok {
		return nil, payload, false, nil
	}
	argv = strings.Split(rest, "\x00")
	if argv[0] == "" {
		return nil, "", true, fmt.Errorf("%w: empty program name", ErrBadArgv)
	}
	return argv, "", true, nil
}
