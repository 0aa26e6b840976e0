// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package guestclient is the host's side of the guest control channel: one SSH connection to a
// guest's init (hostagent/guest) over an already-open net.Conn, on which it runs commands (stdout
// and stderr kept apart, exit status, timeouts that kill the guest process group, capped output)
// and reads, writes and lists files over SFTP.
//
// Errors are sentinels callers can test with errors.Is: ErrNotFound, ErrIsDir, ErrNotDir,
// ErrNotRegular, ErrTooLarge, ErrPermission, ErrInvalid, ErrClosed, ErrBusy.
package guestclient
