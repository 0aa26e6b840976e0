// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package hostagent is the per-host agent of a waggle cluster: it consumes the placements of its
// host from the event log, admits them by free capacity, boots and stops the microVMs, serves the
// exec/file RPC for its environments, enforces idle TTLs, reconciles VMs with the log on start,
// and reports the failure of peer hosts that membership declares dead.
//
// Every lifecycle step is idempotent per environment: the agent folds the environment's
// aggregate before it acts and appends with optimistic concurrency, so a redelivered placement
// never boots a second VM and a conflicting writer makes it re-read, not overwrite.
//
// RPC limits: requests and replies are single NATS messages. File contents too large for one
// message (base64 in JSON) travel as objects in the transfer object store (hostrpc.Transfers)
// named by the message. Every request is checked against Config.Limits, the hostrpc.Limits a
// router checks too: one outside them (a file larger than MaxFileBytes or the caller's smaller
// limit, a relative path, a timeout out of range) is refused with the code and message a router
// gives, never clamped. Exec output is capped per stream (Limits.MaxOutputBytes) and cut
// further to fit a reply, with truncated set.
//
// Packages: the agent serves the host's package proxy (package pkgproxy) on
// Config.PackageSocket, where the VMs' shims relay their guests. install_packages runs pip or
// npm as the sandbox user, or apt through the guest's one privileged request, all from the
// proxy; every exec event lists the package files the guest fetched while the command ran.
package hostagent
