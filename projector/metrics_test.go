// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/internal/metricstest"
)

// TestMetrics: what a replica folded, its lag and its moves to a rebuilt generation show in
// the registry it was given, labelled with its name, and the exposition passes the linter.
func TestMetrics(t *testing.T) {
	ctx := testCtx(t)
	n := eventstest.Start(t)
	evs := workload{hosts: 2, envs: 10, events: 120, seed: 5}.generate(t)
	newAppender(n.Log).append(t, ctx, evs...)
	reg := prometheus.NewRegistry()
	cfg := testConfig("m")
	cfg.DigestEvery, cfg.Metrics = 0, reg
	p := startProjector(t, n.Log, cfg).p
	value := func(series string) float64 { return metricstest.Value(t, reg, series) }
	waitApplied := func(seq uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for p.Applied() < seq || value(`waggle_projector_lag_events{replica="m"}`) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("applied %d of %d", p.Applied(), seq)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitApplied(uint64(len(evs)))
	if _, err := Rebuild(ctx, n.Log); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(`waggle_projector_rebuilds_total{replica="m"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not move to the rebuilt generation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	metricstest.Expect(t, reg, map[string]float64{
		`waggle_projector_applied_total{replica="m"}`:             float64(len(evs)),
		`waggle_projector_refused_total{replica="m"}`:             0,
		`waggle_projector_apply_delay_seconds_count{replica="m"}`: float64(len(evs)),
		`waggle_projector_applied_sequence{replica="m"}`:          float64(len(evs)),
		`waggle_projector_lag_events{replica="m"}`:                0,
		`waggle_projector_lag_seconds{replica="m"}`:               0,
		`waggle_projector_restarts_total{replica="m"}`:            0,
	})
	metricstest.Lint(t, reg)
}

func TestLagSeconds(t *testing.T) {
	m, err := newMetrics(nil, &Projector{})
	if err != nil {
		t.Fatal(err)
	}
	m.caughtUp.Store(time.Now().Add(-3 * time.Second).UnixNano())
	if got := m.lagSeconds(0); got != 0 {
		t.Errorf("lag seconds when caught up: %v", got)
	}
	if got := m.lagSeconds(5); got < 3 || got > 60 {
		t.Errorf("lag seconds 3 s after being caught up: %v", got)
	}
	m.observeLag(true)
	if got := m.lagSeconds(5); got > 1 {
		t.Errorf("lag seconds right after being caught up: %v", got)
	}
}
