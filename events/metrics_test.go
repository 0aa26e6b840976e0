// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/internal/metricstest"
)

// TestMetrics: appends by result, their latency and lost-ack retries, and the server's state,
// show in the registry given, and the exposition passes the Prometheus linter.
func TestMetrics(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, -1)
	reg := prometheus.NewRegistry()
	if err := RegisterServerMetrics(reg, srv); err != nil {
		t.Fatal(err)
	}
	l := openTestLog(t, connect(t, srv), WithMetrics(reg))

	req := envEvent(t, "h1", "e1", EnvRequested, Requested{Runtime: "python", Owner: "t"})
	head, err := l.Append(ctx, req, Head{})
	if err != nil {
		t.Fatal(err)
	}
	// The same append again, as after a lost ack: found stored, not stored twice.
	if _, err := l.Append(ctx, req, Head{}); err != nil {
		t.Fatalf("retry of a stored event: %v", err)
	}
	placed := envEvent(t, "h1", "e1", EnvPlaced, Placed{Host: "h1"})
	if _, err := l.Append(ctx, placed, head); err != nil {
		t.Fatal(err)
	}
	late := envEvent(t, "h1", "e1", EnvRejected, Reason{Reason: "late"})
	if _, err := l.Append(ctx, late, head); !errors.Is(err, ErrConflict) {
		t.Fatalf("append after a stale head: %v, want a conflict", err)
	}
	if _, err := l.Append(ctx, &Event{}, head); err == nil {
		t.Fatal("append of an event without id succeeded")
	}

	metricstest.Expect(t, reg, map[string]float64{
		`waggle_events_appends_total{result="ok"}`:                 3,
		`waggle_events_appends_total{result="conflict"}`:           1,
		`waggle_events_appends_total{result="error"}`:              1,
		`waggle_events_append_duration_seconds_count`:              5,
		`waggle_events_lost_ack_retries_total`:                     1,
		`waggle_nats_stream_messages{stream="WAGGLE_EVENTS"}`:      2,
		`waggle_nats_stream_last_sequence{stream="WAGGLE_EVENTS"}`: 2,
		`waggle_nats_jetstream_meta_leader`:                        1,
		`waggle_nats_connections`:                                  1,
	})
	metricstest.Lint(t, reg)
}
