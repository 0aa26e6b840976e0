// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package access makes the NATS broker waggle's trust boundary: it keeps the keys of a
// cluster's decentralized JWT trust (an operator, the waggle account, the system account),
// issues a user credential (.creds file) per role, and says exactly which subjects each role
// may publish and subscribe to, so that a compromised role can do only what that role needs.
//
// The roles and what they may do are the table in permissions.go; the broker enforces it, not
// the roles' good manners.
package access
