// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import (
	"log/slog"
	"net/netip"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Config configures a Server.
type Config struct {
	// AuthorizedKey is the only client key accepted. Required.
	AuthorizedKey ssh.PublicKey
	// HostKey is the server's host key. Required; the guest init uses an ephemeral one.
	HostKey ssh.Signer
	// Credential is the identity every command and the SFTP server run as. Nil runs them with the
	// server's own identity (tests, or a server that is not root).
	Credential *syscall.Credential
	// UserName is the value of $USER and $LOGNAME.
	UserName string
	// Home is $HOME and the default working directory.
	Home string
	// Shell runs exec payloads that are not argv vectors, as `Shell -c PAYLOAD`, and "shell" requests.
	Shell string
	// Path is $PATH, also used to look up argv[0] of argv requests.
	Path string
	// Env holds fixed extra variables (KEY=VALUE) every command gets, e.g. LANG.
	Env []string
	// EnvAllow lists the variable names a client may set with "env" requests; an entry ending in
	// '*' allows every name with that prefix. Other names are refused.
	EnvAllow []string
	// SFTPCommand is the argv of the SFTP server process started for the "sftp" subsystem; it
	// runs with Credential and speaks SFTP on stdin/stdout (see ServeSFTP).
	SFTPCommand []string
	// OutputGrace is how long the server waits, after a command exited, for processes it left
	// behind to close stdout and stderr before it kills its process group.
	OutputGrace time.Duration
	// ClientAddr, if valid, is the only peer address served; connections from anywhere else (such
	// as the guest's own processes dialing its port 22) are closed before the handshake, so they
	// cannot take the host's connection slots.
	ClientAddr netip.Addr
	// HandshakeTimeout bounds the SSH handshake of each connection.
	HandshakeTimeout time.Duration
	// MaxConns bounds concurrent connections; more are closed at once.
	MaxConns int
	// MaxSessions bounds concurrent sessions per connection; more are rejected.
	MaxSessions int
	// Tracker, if set, starts every child process (PID 1's reaper, so that it never collects a
	// child this server waits for) but the package installer.
	Tracker Tracker
	// AptInstall is the argv of the guest's package installer, which a wire.AptInstallCommand
	// request runs with "--" and the request's checked Debian package names appended: as root,
	// with Privileged starting it, a fixed environment and / as its directory. Empty refuses
	// such requests.
	AptInstall []string
	// Privileged starts the package installer with root's capabilities (Tracker's children
	// have none).
	Privileged Tracker
	// PowerOff, if set, is called after the server acknowledged a wire.PowerOffRequest. If nil the
	// request is refused.
	PowerOff func()
	// Identify, if set, serves a wire.IdentityRequest (already decoded and checked) and returns
	// the new host key; the server then accepts only the request's authorized key, replies with
	// the new host key and closes every connection made before. If nil, or if it fails, the
	// request is refused and nothing changes.
	Identify func(id wire.Identity) (ssh.Signer, error)
	// IdentifyGrace is how long the connection that carried an identity request stays open
	// after the reply (the client should close it first).
	IdentifyGrace time.Duration
	// Logger receives connection and session events.
	Logger *slog.Logger
}

// Tracker starts child processes on behalf of the server and is told when the server has waited
// for them.
type Tracker interface {
	// Start starts cmd (like cmd.Start) and remembers its pid as owned.
	Start(cmd *exec.Cmd) error
	// Done forgets cmd's pid; it is called after cmd.Wait returned.
	Done(cmd *exec.Cmd)
}

// DefaultConfig returns the settings of the guest: user sandbox (uid and gid 1000) in
// /home/sandbox, /bin/sh, a PATH with /opt/venv/bin first, and the SFTP server started as
// `/proc/self/exe sftp-server`. AuthorizedKey and HostKey must still be set.
func DefaultConfig() Config {
	return Config{
		Credential:  &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}},
		UserName:    "sandbox",
		Home:        "/home/sandbox",
		Shell:       "/bin/sh",
		Path:        "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		Env:         []string{"LANG=C.UTF-8"},
		EnvAllow:    []string{"LANG", "LANGUAGE", "LC_*", "TERM", "TZ", "COLORTERM", "NO_COLOR", "PYTHON*", "PIP_*", "NODE_*", "NPM_CONFIG_*"},
		SFTPCommand: []string{"/proc/self/exe", "sftp-server"},
		OutputGrace: 500 * time.Millisecond,

		HandshakeTimeout: 10 * time.Second,
		IdentifyGrace:    5 * time.Second,
		MaxConns:         8,
		MaxSessions:      64,
		Logger:           slog.Default(),
	}
}
