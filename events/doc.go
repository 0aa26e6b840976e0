// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package events is waggle's event log: the versioned event envelope and its types, the
// JetStream stream that stores them, appends with deduplication and optimistic concurrency
// per aggregate, the per-aggregate hash chain, and the readers (load, follow, replay); and the
// embedded NATS JetStream server (one node or a cluster node) that holds the stream.
package events
