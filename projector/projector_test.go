// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"errors"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/projector/audit"
)

// bigWorkload is the issue's: 10,000 events over 500 environments.
var bigWorkload = workload{hosts: 5, envs: 500, events: 10_000, seed: 42}

// TestProjectorConverges folds one random interleaving through the KV projector in several
// ways; each must end at the hash of the in-memory fold.
func TestProjectorConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 10,000 events per case")
	}
	tests := []struct {
		name string
		run  func(t *testing.T, n *eventstest.Node, evs []*events.Event)
	}{
		{"live", func(t *testing.T, n *eventstest.Node, evs []*events.Event) {
			_, pl := n.Connect(t)
			startProjector(t, pl, testConfig("a"))
			newAppender(n.Log).appendConcurrently(t, testCtx(t), evs)
		}},
		{"crash and restart mid-stream", func(t *testing.T, n *eventstest.Node, evs []*events.Event) {
			ctx := testCtx(t)
			a := newAppender(n.Log)
			a.appendConcurrently(t, ctx, evs[:len(evs)/2])
			crashNC, pl := n.Connect(t)
			p1 := startProjector(t, pl, testConfig("a"))
			for p1.p.Applied() < uint64(len(evs)/4) {
				time.Sleep(time.Millisecond)
			}
			crashNC.Close() // the connection drops: no final acks, no final applied sequence
			p1.halt(t)
			t.Logf("crashed at applied seq %d", p1.p.Applied())
			a.appendConcurrently(t, ctx, evs[len(evs)/2:])
			_, pl2 := n.Connect(t)
			startProjector(t, pl2, testConfig("a"))
		}},
		{"full rebuild", func(t *testing.T, n *eventstest.Node, evs []*events.Event) {
			ctx, l := testCtx(t), n.Log
			_, pl := n.Connect(t)
			startProjector(t, pl, testConfig("a"))
			a := newAppender(l)
			a.appendConcurrently(t, ctx, evs[:6000])
			res, err := Rebuild(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			if res.Generation.Gen != 2 || res.Generation.Envs != "waggle_envs_2" || res.Refused != 0 {
				t.Fatalf("rebuild = %+v", res)
			}
			if want := foldAll(t, evs[:6000]).Hash(); res.Hash != want {
				t.Fatalf("rebuild hash %s, want %s", res.Hash, want)
			}
			// The live projector moves to generation 2 and goes on there.
			a.appendConcurrently(t, ctx, evs[6000:])
			r, _ := NewReader(l.JetStream())
			waitView(t, ctx, r, lastSeq(evs))
			res, err = Rebuild(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			if want := foldAll(t, evs).Hash(); res.Hash != want {
				t.Fatalf("second rebuild hash %s, want %s", res.Hash, want)
			}
			// Generation 3 reuses the slot of generation 1; generation 2 stays for late readers.
			if res.Generation.Gen != 3 || res.Generation.Envs != events.EnvsBucket {
				t.Fatalf("second rebuild = %+v", res)
			}
			if _, err := l.JetStream().KeyValue(ctx, "waggle_envs_2"); err != nil {
				t.Fatalf("generation 2 was removed by the rebuild to generation 3: %v", err)
			}
		}},
		{"two projectors at once", func(t *testing.T, n *eventstest.Node, evs []*events.Event) {
			_, pa := n.Connect(t)
			_, pb := n.Connect(t)
			startProjector(t, pa, testConfig("a"))
			startProjector(t, pb, testConfig("b"))
			newAppender(n.Log).appendConcurrently(t, testCtx(t), evs)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			n := eventstest.Start(t)
			l := n.Log
			evs := bigWorkload.generate(t)
			start := time.Now()
			tt.run(t, n, evs)
			t.Logf("scenario ran in %s", time.Since(start).Round(time.Millisecond))

			want := foldAll(t, evs) // Append filled every Seq
			r, err := NewReader(l.JetStream())
			if err != nil {
				t.Fatal(err)
			}
			got := waitView(t, ctx, r, lastSeq(evs))
			t.Logf("view caught up after %s", time.Since(start).Round(time.Millisecond))
			checkAllocation(t, got)
			if got.Hash() != want.Hash() {
				diffViews(t, got, want)
			}
			replayed, refused, err := Fold(ctx, l, nil)
			if err != nil || refused != 0 {
				t.Fatalf("fold: %v, %d refused", err, refused)
			}
			if replayed.Hash() != want.Hash() {
				t.Fatal("replaying the log gives another hash than folding the appended events")
			}
			rep, err := audit.Verify(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Digests == 0 {
				t.Fatalf("verify: %d digests, problems %v", rep.Digests, rep.Problems)
			}
			t.Logf("%d events, %d digests covering through %d, view hash %s", rep.Events, rep.Digests, rep.Covered, want.Hash()[:16])
		})
	}
}

// diffViews reports the first difference between two views.
func diffViews(t *testing.T, got, want *View) {
	t.Helper()
	for id, w := range want.Envs {
		if g := got.Envs[id]; g == nil || roundTripJSON(t, g) != roundTripJSON(t, w) {
			t.Fatalf("env %s:\n got  %s\n want %s", id, roundTripJSON(t, g), roundTripJSON(t, w))
		}
	}
	for id, w := range want.Hosts {
		if g := got.Hosts[id]; g == nil || roundTripJSON(t, g) != roundTripJSON(t, w) {
			t.Fatalf("host %s:\n got  %s\n want %s", id, roundTripJSON(t, g), roundTripJSON(t, w))
		}
	}
	t.Fatalf("views differ: %d/%d envs, %d/%d hosts", len(got.Envs), len(want.Envs), len(got.Hosts), len(want.Hosts))
}

func TestReplayAt(t *testing.T) {
	ctx := testCtx(t)
	l := eventstest.Start(t).Log
	newAppender(l).append(t, ctx, workload{hosts: 3, envs: 30, events: 400, seed: 7}.generate(t)...)
	all := stored(t, ctx, l)

	first := all[0].Stored
	if v, err := ReplayAt(ctx, l, first.Add(-time.Nanosecond)); err != nil || len(v.Envs)+len(v.Hosts) != 0 || v.Seq != 0 {
		t.Fatalf("before the first event: %v, %+v", err, v)
	}
	for _, i := range []int{0, 1, 17, 99, 200, 333, len(all) - 2, len(all) - 1} {
		at := all[i].Stored
		if i+1 < len(all) {
			gap := all[i+1].Stored.Sub(at)
			if gap <= 0 {
				t.Fatalf("seq %d and %d stored at the same instant", all[i].Seq, all[i+1].Seq)
			}
			at = at.Add(gap / 2)
		} else {
			at = at.Add(time.Hour)
		}
		v, err := ReplayAt(ctx, l, at)
		if err != nil {
			t.Fatal(err)
		}
		want := foldAll(t, all[:i+1])
		if v.Seq != all[i].Seq || v.Hash() != want.Hash() {
			t.Fatalf("at %s (after seq %d): view seq %d hash %s, want hash %s", at, all[i].Seq, v.Seq, v.Hash(), want.Hash())
		}
	}
}

func TestReaderQueries(t *testing.T) {
	ctx := testCtx(t)
	l := eventstest.Start(t).Log
	r, err := NewReader(l.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Env(ctx, "env-0001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no view yet: Env = %v, want ErrNotFound", err)
	}
	if seq, err := r.Freshness(ctx); err != nil || seq != 0 {
		t.Fatalf("no view yet: freshness %d, %v", seq, err)
	}
	evs := workload{hosts: 3, envs: 40, events: 600, seed: 3}.generate(t)
	newAppender(l).append(t, ctx, evs...)
	startProjector(t, l, testConfig("q"))
	want := foldAll(t, evs)
	waitView(t, ctx, r, evs[len(evs)-1].Seq)

	same := func(what string, got []*Env, keep func(*Env) bool) {
		t.Helper()
		var exp []*Env
		for _, e := range want.EnvList() {
			if keep(e) {
				exp = append(exp, e)
			}
		}
		if roundTripJSON(t, got) != roundTripJSON(t, exp) {
			t.Fatalf("%s: got %d envs, want %d", what, len(got), len(exp))
		}
	}
	byTenant, err := r.EnvsByTenant(ctx, "t3")
	if err != nil {
		t.Fatal(err)
	}
	same("tenant t3", byTenant, func(e *Env) bool { return e.Owner == "t3" })
	byHost, err := r.EnvsByHost(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	same("host h1", byHost, func(e *Env) bool { return e.Host == "h1" })
	hosts, err := r.Hosts(ctx)
	if err != nil || roundTripJSON(t, hosts) != roundTripJSON(t, want.HostList()) {
		t.Fatalf("hosts: %v", err)
	}
	env, err := r.Env(ctx, "env-0007")
	if err != nil || roundTripJSON(t, env) != roundTripJSON(t, want.Envs["env-0007"]) {
		t.Fatalf("env: %v", err)
	}
	if _, err := r.Env(ctx, "env-9999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Env(missing) = %v, want ErrNotFound", err)
	}
	if _, err := r.Env(ctx, "not a key"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Env(invalid id) = %v, want ErrNotFound", err)
	}
	st, err := ReadStatus(ctx, l)
	if err != nil || st.Applied < evs[len(evs)-1].Seq || st.Lag != st.LastSeq-st.Applied || st.Generation.Gen != 1 || len(st.Replicas) != 1 || st.Replicas[0].Name != "q" {
		t.Fatalf("status %+v, %v", st, err)
	}
}
