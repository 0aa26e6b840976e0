// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckOrigin(t *testing.T) {
	r := &Router{cfg: Config{AllowedOrigins: []string{"http://localhost:6274"}}, logger: slog.New(slog.DiscardHandler)}
	h := r.checkOrigin(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "served") }))
	tests := []struct {
		origin string
		want   int
	}{
		{"", http.StatusOK},                               // not a browser
		{"http://127.0.0.1:8080", http.StatusOK},          // the router's own page
		{"HTTP://127.0.0.1:8080", http.StatusOK},          // scheme and host are case-insensitive
		{"http://localhost:6274", http.StatusOK},          // allowed by the configuration
		{"http://localhost:6274/", http.StatusOK},         // with a trailing slash
		{"http://evil.example.com", http.StatusForbidden}, // another site
		{"http://127.0.0.1:9999", http.StatusForbidden},   // another port is another origin
		{"http://localhost:8080", http.StatusForbidden},   // another host name is too
		{"null", http.StatusForbidden},                    // sandboxed frames, file: pages
		{"file://", http.StatusForbidden},                 //
		{"javascript:alert(1)", http.StatusForbidden},     //
		{"http://127.0.0.1:8080.evil.com", http.StatusForbidden},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/mcp", strings.NewReader("{}"))
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.want {
			t.Errorf("Origin %q: HTTP %d, want %d", tt.origin, w.Code, tt.want)
		}
		if w.Code == http.StatusForbidden && !strings.Contains(w.Body.String(), "localhost:6274") {
			t.Errorf("Origin %q: refusal %q does not say what is allowed", tt.origin, w.Body.String())
		}
	}
}

func TestAllowedOriginsValidated(t *testing.T) {
	for o, ok := range map[string]bool{"http://localhost:6274": true, "https://ui.example.com": true,
		"localhost:6274": false, "http://x/path": false, "ftp://x": false, "http://": false} {
		cfg := DefaultConfig()
		cfg.AllowedOrigins = []string{o}
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("allowed origin %q: Validate %v, want ok %v", o, err, ok)
		}
	}
}
