// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package wire is the contract between the guest's init (hostagent/guest) and the host-side
// client (hostagent/guestclient): console markers, SSH request names and the encoding of argv
// exec requests. Both sides import it so the two never drift apart.
package wire

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Console markers. The guest prints each on a line of its own on /dev/console (ttyS0).
const (
	// ReadyMarker is printed once the SSH server accepts connections.
	ReadyMarker = "WAGGLE-READY"
	// HostKeyMarker precedes the guest's ephemeral SSH host key in authorized_keys format, so the
	// host can pin it; it is printed before ReadyMarker.
	HostKeyMarker = "WAGGLE-HOSTKEY"
	// FailedMarker starts the line printed when a boot stage fails (`WAGGLE-FAILED stage=... err=...`);
	// the guest powers off right after it.
	FailedMarker = "WAGGLE-FAILED"
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

// HostKeyLine is the console line announcing the host key k.
func HostKeyLine(k ssh.PublicKey) string {
	return HostKeyMarker + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// ParseHostKeyLine returns the host key announced by a console line, or false if the line is not
// a host-key line. Leading and trailing whitespace (such as a CR from the serial console) is
// ignored.
func ParseHostKeyLine(line string) (ssh.PublicKey, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), HostKeyMarker+" ")
	if !ok {
		return nil, false
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(rest))
	if err != nil {
		return nil, false
	}
	return k, true
}
