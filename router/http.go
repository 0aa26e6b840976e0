// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"fmt"
	"net/http"
	"time"
)

// HTTP hardening. Config.ReadTimeout bounds reading a request, headers and body (net/http lifts
// the read deadline once the body has been read, so it never bounds the call itself).
// Config.WriteTimeout, the server-wide write deadline, would drop the answer of every tool call
// that outlasts it, and tool calls legitimately take minutes (execute up to Limits.Exec.Max,
// install_packages, a create waiting for boots): so each MCP request gets its own write
// deadline, CallTimeout, through http.ResponseController. A handler that streams (SSE) extends
// its write deadline the same way as it goes.

// readHeaderTimeout bounds reading a request's headers.
const readHeaderTimeout = 10 * time.Second

// callSlack is what a tool call's answer may need beyond its longest wait: moving a large body
// and writing the answer to a slow client.
const callSlack = time.Minute

// CallTimeout is the longest one tool call may legitimately take: the longest wait of any tool
// (an exec or install at its maximum, a process wait, a create trying every placement, a
// destroy, a file call) plus the slack of moving its body and answer.
func (c Config) CallTimeout() time.Duration {
	l := c.Limits
	return callSlack + max(
		l.Exec.Max+c.RPCMargin, l.Install.Max+c.RPCMargin, l.ProcessWait.Max+c.FileRPCTimeout,
		time.Duration(c.PlaceAttempts)*c.BootTimeout, c.DestroyTimeout, c.FileRPCTimeout)
}

// MaxRequestBytes bounds an MCP request body. The largest file (Limits.MaxFileBytes) fits as
// base64, 4/3 of its size, and as text whose JSON escaping at most doubles it (quotes,
// newlines, backslashes; a 3-byte UTF-8 character written as \uXXXX); the largest code fits
// even with every byte escaped (\u00XX); the JSON-RPC envelope and an escaped path fit beside
// either. Text that escapes worse (control characters) goes as base64.
func (c Config) MaxRequestBytes() int64 {
	l := c.Limits
	return max(2*int64(l.MaxFileBytes), 6*int64(l.MaxCodeBytes)) + 6*int64(l.MaxPathBytes) + 64<<10
}

// newServer is the HTTP server of the router: the header, idle and plain write timeouts here,
// a tool call's own deadlines per request (withCallLimits).
func (r *Router) newServer() *http.Server {
	return &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       r.cfg.ReadTimeout,
		WriteTimeout:      r.cfg.WriteTimeout,
		IdleTimeout:       r.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

// withCallLimits gives each MCP request its write deadline (CallTimeout) and the body limit
// (MaxRequestBytes); a body declared larger is refused at once with 413.
func (r *Router) withCallLimits(next http.Handler) http.Handler {
	limit, callTimeout := r.cfg.MaxRequestBytes(), r.cfg.CallTimeout()
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// A writer without deadlines (a test recorder, a wrapping middleware) keeps the server's.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(callTimeout))
		if req.ContentLength > limit {
			http.Error(w, fmt.Sprintf("request body of %d bytes is over this router's limit of %d bytes; "+
				"a file of up to %d bytes fits when sent with encoding base64", req.ContentLength, limit, r.cfg.Limits.MaxFileBytes),
				http.StatusRequestEntityTooLarge)
			return
		}
		req.Body = http.MaxBytesReader(w, req.Body, limit)
		next.ServeHTTP(w, req)
	})
}
