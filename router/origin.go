// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// checkOrigin refuses, with 403, a request a web page sent on its visitor's behalf: one whose
// Origin header is neither the router's own (the scheme and host the request was sent to) nor
// listed in Config.AllowedOrigins. MCP clients that are not browsers send no Origin and pass.
// Together with the Host check mcp-go makes on loopback listeners, this is the DNS rebinding
// protection the MCP transport specification asks for; it runs before authentication, so a
// page learns nothing from the answer.
func (r *Router) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		origin := req.Header.Get("Origin")
		if origin == "" || r.originAllowed(origin, req.Host) {
			next.ServeHTTP(w, req)
			return
		}
		r.logger.Info("request refused: foreign origin", "origin", origin, "host", req.Host, "remote", req.RemoteAddr)
		http.Error(w, "Forbidden: Origin "+origin+" may not call this MCP server (allowed: the server's own origin"+
			r.allowedOriginsText()+")", http.StatusForbidden)
	})
}

// originAllowed reports whether a request from origin to host may be served.
func (r *Router) originAllowed(origin, host string) bool {
	if slices.Contains(r.cfg.AllowedOrigins, strings.TrimSuffix(origin, "/")) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false // "null", file:, or garbage
	}
	return strings.EqualFold(u.Host, host)
}

func (r *Router) allowedOriginsText() string {
	if len(r.cfg.AllowedOrigins) == 0 {
		return ""
	}
	return " and " + strings.Join(r.cfg.AllowedOrigins, ", ")
}
