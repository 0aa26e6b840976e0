// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestScanAndLoad: Scan sees exactly the events on its subject, in order; Load one aggregate.
func TestScanAndLoad(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	heads := map[string]Head{}
	for i := range 30 {
		env := []string{"a", "b", "c"}[i%3]
		typ := EnvRequested
		if heads[env].Seq != 0 {
			typ = EnvTouched
		}
		h, err := l.Append(ctx, envEvent(t, "h1", env, typ, nil), heads[env])
		if err != nil {
			t.Fatal(err)
		}
		heads[env] = h
	}
	if _, err := l.Append(ctx, envEvent(t, "h2", "d", EnvRequested, nil), Head{}); err != nil {
		t.Fatal(err)
	}
	var seen []*Event
	if err := l.Scan(ctx, HostEnvs("h1"), 0, func(ev *Event) error { seen = append(seen, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 30 {
		t.Fatalf("scan of h1 saw %d events, want 30", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Seq <= seen[i-1].Seq || seen[i].Host != "h1" {
			t.Fatalf("scan order or filter broken at %d: %+v", i, seen[i])
		}
	}
	evs, head, err := l.Load(ctx, EnvAggregate("h1", "b"))
	if err != nil || len(evs) != 10 || head != heads["b"] {
		t.Fatalf("load b: %d events, head %+v (want 10, %+v), %v", len(evs), head, heads["b"], err)
	}
	checkChain(t, evs)
	evs, head, err = l.Load(ctx, EnvAggregate("h9", "none"))
	if err != nil || len(evs) != 0 || head != (Head{}) {
		t.Fatalf("load of an empty aggregate: %d, %+v, %v", len(evs), head, err)
	}
}

// TestWatch: Watch delivers what was stored before and after it started, in order, quickly,
// and never an append the stream refused (a core subscriber sees those too).
func TestWatch(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	agg := EnvAggregate("h1", "w")
	head, err := l.Append(ctx, envEvent(t, "h1", "w", EnvRequested, nil), Head{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Event, 10)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- l.Watch(wctx, agg, 1, func(ev *Event) error { got <- ev; return nil })
	}()
	if ev := <-got; ev.Type != EnvRequested {
		t.Fatalf("first event %s", ev.Type)
	}
	// A refused append (stale head) reaches core subscribers but is not stored.
	if _, err := l.Append(ctx, envEvent(t, "h1", "w", EnvPlaced, nil), Head{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale append: %v", err)
	}
	start := time.Now()
	placed := envEvent(t, "h1", "w", EnvPlaced, nil)
	if _, err := l.Append(ctx, placed, head); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.ID != placed.ID {
			t.Fatalf("watch delivered %s (%s), want the stored placed %s", ev.ID, ev.Type, placed.ID)
		}
		t.Logf("watch saw the append after %s", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not see the append")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	select {
	case ev := <-got:
		t.Fatalf("extra event %s", ev.Type)
	default:
	}
	// fn's error ends the watch and is returned.
	stop := errors.New("stop")
	if err := l.Watch(ctx, agg, 1, func(*Event) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("watch with a failing fn: %v", err)
	}
}
