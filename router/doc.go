// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package router is waggle's stateless front: it authenticates callers (API key -> tenant),
// places new environments on live hosts from the projected view, forwards exec and file calls
// to the owning host over NATS, and serves the MCP endpoint, health and metrics over HTTP. It
// keeps no state another replica would need, so any replica can serve any call.
package router
