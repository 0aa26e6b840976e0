// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package mcp is waggle's MCP surface: the tool definitions (names, parameters and limits of
// the original waggle tools, plus get_environment), the decoding of their arguments, and the
// handlers that call the router, served over stateless Streamable HTTP.
package mcp
