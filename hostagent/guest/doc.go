// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package guest is PID 1 of a waggle guest (cmd/waggle-init): a pipeline of named boot stages
// (early mounts, kernel command line, modules, root disk, switch root, late mounts, hostname,
// network, kernel hardening, lockdown, SSH) that ends with the SSH server of package sshd serving
// the host, a zombie reaper that never steals a child the server waits for, and a clean power-off
// on SIGTERM, SIGPWR, SIGINT (Ctrl-Alt-Del) or an SSH request.
//
// Console protocol (see package wire): WAGGLE-HOSTKEY, then WAGGLE-READY once SSH listens; or
// WAGGLE-FAILED stage=NAME err=... before powering off when a stage fails. A guest restored
// from a snapshot gets the wire.IdentityRequest over SSH (entropy, clock, host name, keys).
package guest
