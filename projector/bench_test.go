// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
)

// BenchmarkFold measures the pure fold: decoded events into an in-memory view.
func BenchmarkFold(b *testing.B) {
	evs := numbered(bigWorkload.generate(b))
	n := 0
	start := time.Now()
	for b.Loop() {
		n++
		v := NewView()
		for _, ev := range evs {
			if err := Apply(v, ev); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n*len(evs))/time.Since(start).Seconds(), "events/s")
}

// BenchmarkRebuildInMemory measures a full in-memory rebuild from the log: read every event
// from the stream, decode it and fold it (what `waggle replay` and `projector rebuild` do
// before writing anything).
func BenchmarkRebuildInMemory(b *testing.B) {
	ctx := testCtx(b)
	l := eventstest.Start(b).Log
	evs := bigWorkload.generate(b)
	newAppender(l).append(b, ctx, evs...)
	n := 0
	start := time.Now()
	for b.Loop() {
		n++
		v, refused, err := Fold(ctx, l, nil)
		if err != nil || refused != 0 || len(v.Envs) != bigWorkload.envs {
			b.Fatalf("fold: %v, %d refused, %d envs", err, refused, len(v.Envs))
		}
	}
	b.ReportMetric(float64(n*len(evs))/time.Since(start).Seconds(), "events/s")
}

// BenchmarkProjectorLag appends b.N environment events at 1,000 events/s while a projector
// runs, and reports how long after each append was acknowledged the view (waggle_envs) showed
// it: p50 and p99 in milliseconds. Run with -benchtime=5000x for a stable p99.
func BenchmarkProjectorLag(b *testing.B) {
	ctx := testCtx(b)
	n := eventstest.Start(b)
	l := n.Log
	_, pl := n.Connect(b)
	cfg := testConfig("bench")
	cfg.DigestEvery, cfg.DigestInterval = 1000, time.Minute
	startProjector(b, pl, cfg)

	w := workload{hosts: 5, envs: max(1, b.N/20), events: b.N + 5, seed: 9}
	all := w.generate(b)
	a := newAppender(l)
	a.append(b, ctx, all[:w.hosts]...) // the hosts join before the clock starts
	evs := slices.DeleteFunc(all[w.hosts:], func(ev *events.Event) bool { return ev.Env == "" })

	r, _ := NewReader(l.JetStream())
	waitView(b, ctx, r, a.heads[events.HostAggregate("h0")].Seq)
	kv, err := l.JetStream().KeyValue(ctx, events.EnvsBucket)
	if err != nil {
		b.Fatal(err)
	}
	watcher, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = watcher.Stop() }()
	// The bucket keeps one value per key, so a watcher may skip a value overwritten before it
	// was delivered: an event counts as shown when its environment shows it or a later event.
	type shown struct {
		seq uint64
		at  time.Time
	}
	var mu sync.Mutex
	seen := map[string][]shown{}
	go func() {
		for e := range watcher.Updates() {
			if e == nil {
				continue
			}
			var env Env
			if json.Unmarshal(e.Value(), &env) == nil {
				mu.Lock()
				seen[env.ID] = append(seen[env.ID], shown{env.Seq, time.Now()})
				mu.Unlock()
			}
		}
	}()

	acked := make([]time.Time, len(evs))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i, ev := range evs {
		<-tick.C
		a.append(b, ctx, ev)
		acked[i] = time.Now()
	}
	b.StopTimer()
	waitView(b, ctx, r, evs[len(evs)-1].Seq)
	time.Sleep(50 * time.Millisecond) // let the watcher deliver the last updates

	mu.Lock()
	defer mu.Unlock()
	lags := make([]float64, 0, len(evs))
	for i, ev := range evs {
		j := slices.IndexFunc(seen[ev.Env], func(s shown) bool { return s.seq >= ev.Seq })
		if j < 0 {
			b.Fatalf("the view never showed seq %d (env %s)", ev.Seq, ev.Env)
		}
		lags = append(lags, max(0, seen[ev.Env][j].at.Sub(acked[i]).Seconds()*1000))
	}
	slices.Sort(lags)
	b.ReportMetric(lags[len(lags)/2], "p50-lag-ms")
	b.ReportMetric(lags[len(lags)*99/100], "p99-lag-ms")
	b.ReportMetric(lags[len(lags)-1], "max-lag-ms")
}
