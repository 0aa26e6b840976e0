// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package projector folds the event log into the queryable view of environments and hosts:
// one pure fold (Apply) drives the live projector (KV buckets waggle_envs and waggle_hosts), a
// full rebuild into fresh buckets, and the in-memory replay of the log as of any moment.
//
// Layout in JetStream KV:
//
//   - waggle_view: the meta bucket. Key "current" points at the live generation of the view
//     (its buckets); key "applied.<gen>" holds the stream sequence that generation reflects.
//   - waggle_envs / waggle_hosts: generation 1 of the view; a rebuild writes generation N into
//     waggle_envs_<N> / waggle_hosts_<N>, then swaps "current" (a revision-checked update),
//     and removes generations older than N-1. Live projectors watch "current" and move to the
//     new generation, re-applying the events after the rebuild's sequence (a no-op where the
//     rebuild already had them).
//
// The live projector folds each event with Apply over a partial view holding what the event
// touches (its environment and host, read from the buckets), then writes back what changed.
// Every environment and host value carries the stream sequence of the last event that changed
// it; an event at or below that sequence is skipped, so redelivery and concurrent replicas are
// harmless. Writes are revision-checked (Create, or Update with the revision read), and for an
// event that touches an environment and its host, the host is written first: a crash between
// the two writes leaves the environment at its previous state, so the retry recomputes the
// same host change and finds the host already done.
package projector
