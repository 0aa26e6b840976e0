// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestAppendLoadFollow(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	agg := EnvAggregate("h1", "e1")

	var head Head
	types := []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted}
	for _, typ := range types {
		ev := envEvent(t, "h1", "e1", typ, nil)
		var err error
		if head, err = l.Append(ctx, ev, head); err != nil {
			t.Fatalf("append %s: %v", typ, err)
		}
		if ev.Seq != head.Seq || ev.Subject != EnvSubject("h1", "e1", typ) || Hash(ev.Raw) != head.Hash || ev.Stored.IsZero() {
			t.Fatalf("append %s filled %+v, head %+v", typ, ev, head)
		}
	}
	// Another aggregate interleaved.
	if _, err := l.Append(ctx, envEvent(t, "h1", "e2", EnvRequested, nil), Head{}); err != nil {
		t.Fatal(err)
	}

	evs, loaded, err := l.Load(ctx, agg)
	if err != nil {
		t.Fatal(err)
	}
	if loaded != head || len(evs) != len(types) {
		t.Fatalf("load: %d events, head %+v; want %d, %+v", len(evs), loaded, len(types), head)
	}
	for i, ev := range evs {
		if ev.Type != types[i] || ev.Stored.IsZero() || ev.Subject != EnvSubject("h1", "e1", types[i]) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	checkChain(t, evs)

	if got, err := l.Head(ctx, agg); err != nil || got != head {
		t.Fatalf("head %+v, %v; want %+v", got, err, head)
	}
	if got, err := l.Head(ctx, EnvAggregate("h1", "none")); err != nil || got != (Head{}) {
		t.Fatalf("empty head %+v, %v", got, err)
	}
	if evs, h, err := l.Load(ctx, EnvAggregate("h1", "none")); err != nil || len(evs) != 0 || h != (Head{}) {
		t.Fatalf("empty load: %d, %+v, %v", len(evs), h, err)
	}

	// AppendNew reads the head itself.
	batch := []*Event{envEvent(t, "h1", "e3", EnvRequested, nil), envEvent(t, "h1", "e3", EnvPlaced, nil)}
	if h, err := l.AppendNew(ctx, batch...); err != nil || h.Seq != batch[1].Seq || batch[1].Prev != Hash(batch[0].Raw) {
		t.Fatalf("AppendNew: %+v, %v", h, err)
	}
	if h, err := l.AppendNew(ctx, envEvent(t, "h1", "e3", EnvStarting, nil)); err != nil || h.Seq != batch[1].Seq+1 {
		t.Fatalf("AppendNew after: %+v, %v", h, err)
	}
	if _, err := l.AppendNew(ctx, envEvent(t, "h1", "e3", EnvStarted, nil), envEvent(t, "h1", "e4", EnvStarted, nil)); err == nil {
		t.Fatal("AppendNew accepted events of two aggregates")
	}

	// A stale head is a conflict.
	_, err = l.Append(ctx, envEvent(t, "h1", "e1", EnvExec, nil), Head{Seq: 1})
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Expected != 1 || ce.Actual != head || ce.Aggregate != agg {
		t.Fatalf("stale append: %v", err)
	}

	// Follow sees the old events, then a live one.
	fctx, cancel := context.WithCancel(ctx)
	got := make(chan *Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(fctx, Position{}, []string{agg}, func(ev *Event) error {
			got <- ev
			return nil
		})
	}()
	for i := range types {
		if ev := <-got; ev.Type != types[i] {
			t.Fatalf("follow %d: %s", i, ev.Type)
		}
	}
	live := envEvent(t, "h1", "e1", EnvExec, Exec{Language: "python"})
	if _, err := l.Append(ctx, live, head); err != nil {
		t.Fatal(err)
	}
	if ev := <-got; ev.ID != live.ID || ev.Seq != live.Seq {
		t.Fatalf("follow live: %+v", ev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow returned %v", err)
	}
}

func TestReplayAndPositions(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	heads := map[string]Head{}
	var mid time.Time
	for i := range 20 {
		env := fmt.Sprintf("e%d", i%3)
		if i == 10 {
			time.Sleep(5 * time.Millisecond)
			mid = time.Now()
		}
		h, err := l.Append(ctx, envEvent(t, "h1", env, EnvTouched, nil), heads[env])
		if err != nil {
			t.Fatal(err)
		}
		heads[env] = h
	}
	if _, err := l.Append(ctx, mustHostEvent(t, "h1", HostJoined), Head{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		from    Position
		filters []string
		want    []uint64
	}{
		{"all", Position{}, nil, seqs(1, 21)},
		{"from seq", Position{Seq: 18}, nil, seqs(18, 21)},
		{"seq wins over time", Position{Seq: 20, Time: time.Unix(1, 0)}, nil, seqs(20, 21)},
		{"from time", Position{Time: mid}, nil, seqs(11, 21)},
		{"filter env", Position{}, []string{EnvAggregate("h1", "e1")}, []uint64{2, 5, 8, 11, 14, 17, 20}},
		{"filter hosts", Position{}, []string{HostAggregate("h1")}, []uint64{21}},
		{"two filters", Position{Seq: 15}, []string{EnvAggregate("h1", "e0"), HostAggregate("h1")}, []uint64{16, 19, 21}},
		{"all subjects constant", Position{Seq: 21}, []string{AllSubjects}, []uint64{21}},
		{"nothing matches", Position{}, []string{EnvAggregate("h2", "x")}, nil},
		{"past the end", Position{Seq: 99}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := l.Replay(ctx, tt.from, tt.filters, func(ev *Event) error {
				got = append(got, ev.Seq)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	ev, err := l.Get(ctx, 21)
	if err != nil || ev.Type != HostJoined || ev.Seq != 21 {
		t.Fatalf("get: %+v, %v", ev, err)
	}
	if _, err := l.Get(ctx, 500); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if last, err := l.LastSeq(ctx); err != nil || last != 21 {
		t.Fatalf("last seq %d, %v", last, err)
	}
}

func seqs(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func mustHostEvent(t testing.TB, host, typ string) *Event {
	t.Helper()
	ev, err := NewHostEvent(host, typ, "system", nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestConcurrentAppendsOneAggregate: 8 writers (on two connections) make 1000 appends to one
// aggregate; each reads the head, appends and retries on conflict.
func TestConcurrentAppendsOneAggregate(t *testing.T) {
	srv, l1 := newTestLog(t)
	l2 := openTestLog(t, connect(t, srv))
	ctx := testCtx(t)
	const writers, total = 8, 1000
	agg := EnvAggregate("h1", "hot")
	var attempts, conflicts, retries, stored, next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		l := []*Log{l1, l2}[w%2]
		wg.Go(func() {
			for next.Add(1) <= total {
				ev := envEvent(t, "h1", "hot", EnvTouched, Touched{Calls: w})
				for try := 0; ; try++ {
					if try > 0 {
						retries.Add(1)
					}
					head, err := l.Head(ctx, agg)
					if err != nil {
						errs <- err
						return
					}
					attempts.Add(1)
					_, err = l.Append(ctx, ev, head)
					if err == nil {
						stored.Add(1)
						break
					}
					if !errors.Is(err, ErrConflict) {
						errs <- err
						return
					}
					conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs, head, err := l1.Load(ctx, agg)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != total || stored.Load() != total {
		t.Fatalf("%d events stored, %d acknowledged, want %d", len(evs), stored.Load(), total)
	}
	checkChain(t, evs)
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("gap: event %d has seq %d", i, ev.Seq)
		}
	}
	if head.Seq != total {
		t.Fatalf("head %d", head.Seq)
	}
	if conflicts.Load() != retries.Load() || attempts.Load() != total+conflicts.Load() {
		t.Fatalf("attempts %d, conflicts %d, retries %d: every attempt must store one event or report a conflict",
			attempts.Load(), conflicts.Load(), retries.Load())
	}
	t.Logf("%d appends from %d writers: %d attempts, %d conflicts, %d retries", total, writers, attempts.Load(), conflicts.Load(), retries.Load())
}

func TestOpenLogRestoresAuditSettingsAndKeepsTuning(t *testing.T) {
	srv := startServer(t, -1)
	nc := connect(t, srv)
	ctx := testCtx(t)
	openTestLog(t, nc, WithDuplicateWindow(5*time.Minute))

	// An operator loosened the stream; someone else enabled an unrelated feature.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := StreamConfig(1, 5*time.Minute)
	cfg.MaxAge, cfg.AllowMsgTTL = time.Hour, true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	l := openTestLog(t, nc) // no options: keep replicas and the longer window
	got := l.Stream().CachedInfo().Config
	if got.MaxAge != 0 || !got.DenyPurge || !got.DenyDelete || got.Duplicates != 5*time.Minute || got.Replicas != 1 || !got.AllowMsgTTL {
		t.Fatalf("config after reopen: %+v", got)
	}
	if _, err := OpenLog(ctx, nc, WithDuplicateWindow(time.Minute)); err == nil {
		t.Fatal("a 1m duplicate window was accepted")
	}
}
