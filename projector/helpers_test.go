// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
)

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// appender appends generated events, keeping every aggregate's head.
type appender struct {
	log   *events.Log
	heads map[string]events.Head
}

func newAppender(l *events.Log) *appender { return &appender{log: l, heads: map[string]events.Head{}} }

func (a *appender) append(t testing.TB, ctx context.Context, evs ...*events.Event) {
	t.Helper()
	for _, ev := range evs {
		agg := events.AggregateOf(ev)
		head, err := a.log.Append(ctx, ev, a.heads[agg])
		if err != nil {
			t.Fatalf("append %s %s: %v", agg, ev.Type, err)
		}
		a.heads[agg] = head
	}
}

// appendConcurrently appends evs from several goroutines, each owning some aggregates and
// keeping their order; the stream's interleaving is then up to the scheduler.
func (a *appender) appendConcurrently(t testing.TB, ctx context.Context, evs []*events.Event) {
	t.Helper()
	const workers = 8
	parts := make([][]*events.Event, workers)
	owner := map[string]int{}
	for _, ev := range evs {
		agg := events.AggregateOf(ev)
		w, ok := owner[agg]
		if !ok {
			w = len(owner) % workers
			owner[agg] = w
		}
		parts[w] = append(parts[w], ev)
	}
	heads := make([]map[string]events.Head, workers)
	for i := range heads {
		heads[i] = map[string]events.Head{}
		for agg, w := range owner {
			if w == i {
				heads[i][agg] = a.heads[agg]
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i, part := range parts {
		wg.Go(func() {
			for _, ev := range part {
				agg := events.AggregateOf(ev)
				head, err := a.log.Append(ctx, ev, heads[i][agg])
				if err != nil {
					errs <- err
					return
				}
				heads[i][agg] = head
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, h := range heads {
		maps.Copy(a.heads, h)
	}
}

// lastSeq is the highest sequence among appended events.
func lastSeq(evs []*events.Event) uint64 {
	var last uint64
	for _, ev := range evs {
		last = max(last, ev.Seq)
	}
	return last
}

// stored reads every event of the log back (with server timestamps).
func stored(t testing.TB, ctx context.Context, l *events.Log) []*events.Event {
	t.Helper()
	var out []*events.Event
	if err := l.Replay(ctx, events.Position{}, nil, func(ev *events.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func testConfig(name string) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.DigestEvery = 500
	cfg.DigestInterval = 200 * time.Millisecond
	cfg.Tick = 50 * time.Millisecond
	cfg.RetryDelay = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

// running is a projector started by a test.
type running struct {
	p    *Projector
	stop context.CancelFunc
	done chan error
}

func startProjector(t testing.TB, l *events.Log, cfg Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{p: p, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.p.Run(ctx) }()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { r.halt(t) }) })
	return r
}

func (r *running) halt(t testing.TB) {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("projector: %v", err)
		}
		r.done <- nil // let a later halt (cleanup) return too
	case <-time.After(30 * time.Second):
		t.Error("projector did not stop")
	}
}

// waitView waits until the view reflects seq, then reads it.
func waitView(t testing.TB, ctx context.Context, r *Reader, seq uint64) *View {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		fresh, err := r.Freshness(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		if fresh >= seq {
			v, err := r.View(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("view at seq %d, want %d", fresh, seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
