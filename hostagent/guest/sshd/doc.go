// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package sshd is the guest's SSH server: it accepts only the host's per-VM key and runs each
// session's command, or the SFTP subsystem, as the sandbox user in a process group of its own.
//
// Exec requests: a payload produced by wire.EncodeArgv is executed directly (argv[0] is looked up
// in the command's PATH, no shell); any other payload is run as `Config.Shell -c PAYLOAD`.
// stdout and stderr are separate SSH streams; the exit status is sent as "exit-status", or as
// "exit-signal" when the command was killed by a signal. A "signal" request is delivered to the
// whole process group. When the command exits the server waits Config.OutputGrace for the
// remaining output, then kills the group; closing the session also kills the group, so no process
// of a session outlives it (unless it left the group with setsid).
package sshd
