// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/internal/metricstest"
)

// TestMetrics: tool calls, authentication failures and host RPCs show in the registry the
// router was given, labelled with its id, and the exposition passes the Prometheus linter.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	n := eventstest.Start(t)
	toks, err := OpenTokens(ctx, n.Log.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := toks.Create(ctx, "acme", "k")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.ID, cfg.Metrics = "r7", reg
	r, err := New(cfg, Deps{NC: n.NC, Log: n.Log, View: emptyView{}, Tokens: toks, MCP: func(*Router) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	}})
	if err != nil {
		t.Fatal(err)
	}
	for auth, want := range map[string]int{"": http.StatusUnauthorized, "Bearer nope": http.StatusUnauthorized, "Bearer " + key: http.StatusNoContent} {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Authorization %q: status %d, want %d", auth, rec.Code, want)
		}
	}
	done := r.Metrics().Begin("execute")
	if got := testutil.ToFloat64(r.metrics.inFlight); got != 1 {
		t.Errorf("in flight during a call: %v", got)
	}
	done("ok")
	r.Metrics().Begin("execute")(KindNotFound)
	// A host RPC to a host that is not there is timed too.
	env := "01metricsenv"
	req, _ := events.NewEnvEvent("h1", env, events.EnvRequested, "acme/k", events.Requested{Runtime: "shell", Owner: "acme"})
	if _, err := n.Log.Append(ctx, req, events.Head{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Exec(ctx, Principal{Tenant: "acme"}, env, ExecRequest{Code: "true"}); err == nil {
		t.Fatal("exec without a host succeeded")
	}

	metricstest.Expect(t, reg, map[string]float64{
		`waggle_router_auth_failures_total{reason="missing_key",router="r7"}`:         1,
		`waggle_router_auth_failures_total{reason="bad_key",router="r7"}`:             1,
		`waggle_router_auth_failures_total{reason="unavailable",router="r7"}`:         0,
		`waggle_router_requests_total{result="ok",router="r7",tool="execute"}`:        1,
		`waggle_router_requests_total{result="not_found",router="r7",tool="execute"}`: 1,
		`waggle_router_request_duration_seconds_count{router="r7",tool="execute"}`:    2,
		`waggle_router_host_rpc_duration_seconds_count{op="exec",router="r7"}`:        1,
		`waggle_router_in_flight{router="r7"}`:                                        0,
		`waggle_router_placement_retries_total{router="r7"}`:                          0,
	})
	metricstest.Lint(t, reg)
	// /metrics serves the same registry.
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `waggle_router_requests_total{result="ok",router="r7",tool="execute"} 1`) {
		t.Errorf("/metrics:\n%s", rec.Body.String())
	}
}
