// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package audit checks that the event log was not altered: it walks every aggregate's hash
// chain, computes and checks digests over sequence ranges, and describes events as "who did
// what" records for auditors.
package audit
