// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"errors"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
)

func envEvent(t *testing.T, seq uint64, env, typ string, at time.Time, data any) *events.Event {
	t.Helper()
	ev, err := events.NewEnvEvent("h1", env, typ, "t1", data)
	if err != nil {
		t.Fatal(err)
	}
	ev.Seq, ev.Time = seq, at
	return ev
}

func TestApplyLifecycle(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	req := events.Requested{Runtime: "python", Name: "a", Owner: "t1", Resources: events.Resources{CPUs: 2, MemoryMiB: 512}, TTLSeconds: 600}
	type step struct {
		typ  string
		data any
	}
	tests := []struct {
		name      string
		steps     []step
		state     string
		allocCPUs int
		envCount  int
		expires   bool
		lastError string
	}{
		{"requested", []step{{events.EnvRequested, req}}, events.StateRequested, 0, 0, false, ""},
		{"placed holds resources", []step{{events.EnvRequested, req}, {events.EnvPlaced, events.Placed{Host: "h1"}}}, events.StatePlaced, 2, 1, false, ""},
		{"running expires", []step{{events.EnvRequested, req}, {events.EnvPlaced, events.Placed{Host: "h1"}}, {events.EnvStarting, nil}, {events.EnvStarted, events.Started{}}},
			events.StateRunning, 2, 1, true, ""},
		{"rejected frees", []step{{events.EnvRequested, req}, {events.EnvPlaced, events.Placed{Host: "h1"}}, {events.EnvRejected, events.Reason{Reason: "full"}}},
			events.StateRejected, 0, 0, false, "full"},
		{"destroying still holds", []step{{events.EnvRequested, req}, {events.EnvPlaced, events.Placed{Host: "h1"}}, {events.EnvStarting, nil}, {events.EnvStarted, nil},
			{events.EnvDestroyRequested, events.DestroyRequested{By: "t1", Reason: events.ReasonUser}}}, events.StateDestroying, 2, 1, false, ""},
		{"destroyed frees", []step{{events.EnvRequested, req}, {events.EnvPlaced, events.Placed{Host: "h1"}}, {events.EnvStarting, nil}, {events.EnvStarted, nil},
			{events.EnvDestroyRequested, nil}, {events.EnvDestroyed, nil}}, events.StateDestroyed, 0, 0, false, ""},
		{"lost frees", []step{{events.EnvRequested, req}, {events.EnvPlaced, events.Placed{Host: "h1"}}, {events.EnvLost, events.Reason{Reason: "host failed"}}},
			events.StateLost, 0, 0, false, "host failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewView()
			for i, s := range tt.steps {
				if err := Apply(v, envEvent(t, uint64(i+1), "e1", s.typ, t0.Add(time.Duration(i)*time.Second), s.data)); err != nil {
					t.Fatal(err)
				}
			}
			env := v.Envs["e1"]
			if env.State != tt.state || env.LastError != tt.lastError || env.Seq != uint64(len(tt.steps)) {
				t.Fatalf("env = %+v, want state %s, last error %q, seq %d", env, tt.state, tt.lastError, len(tt.steps))
			}
			if env.Owner != "t1" || env.Host != "h1" || env.Runtime != "python" || !env.Created.Equal(t0) {
				t.Fatalf("env = %+v", env)
			}
			if got := !env.Expires.IsZero(); got != tt.expires {
				t.Fatalf("expires = %v, want set %v", env.Expires, tt.expires)
			}
			if tt.expires && !env.Expires.Equal(env.LastActive.Add(600*time.Second)) {
				t.Fatalf("expires %v, last active %v", env.Expires, env.LastActive)
			}
			h := v.Hosts["h1"]
			if tt.allocCPUs == 0 && h == nil {
				return
			}
			if h.Allocated.CPUs != tt.allocCPUs || h.EnvCount != tt.envCount {
				t.Fatalf("host = %+v, want %d cpus in %d envs", h, tt.allocCPUs, tt.envCount)
			}
		})
	}
}

func TestApplyTouchMovesExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := NewView()
	steps := []*events.Event{
		envEvent(t, 1, "e1", events.EnvRequested, t0, events.Requested{Owner: "t1", TTLSeconds: 60}),
		envEvent(t, 2, "e1", events.EnvPlaced, t0, events.Placed{Host: "h1"}),
		envEvent(t, 3, "e1", events.EnvStarting, t0, nil),
		envEvent(t, 4, "e1", events.EnvStarted, t0.Add(time.Second), nil),
		envEvent(t, 5, "e1", events.EnvTouched, t0.Add(time.Hour), events.Touched{LastActive: t0.Add(10 * time.Minute)}),
		envEvent(t, 6, "e1", events.EnvTouched, t0.Add(time.Hour), events.Touched{LastActive: t0.Add(5 * time.Minute)}), // older: ignored
		envEvent(t, 7, "e1", events.EnvExec, t0.Add(20*time.Minute), events.Exec{}),
	}
	for _, ev := range steps {
		if err := Apply(v, ev); err != nil {
			t.Fatal(err)
		}
	}
	env := v.Envs["e1"]
	if want := t0.Add(20 * time.Minute); !env.LastActive.Equal(want) || !env.Expires.Equal(want.Add(time.Minute)) {
		t.Fatalf("last active %v expires %v", env.LastActive, env.Expires)
	}
}

func TestApplyRefusesIllegal(t *testing.T) {
	v := NewView()
	err := Apply(v, envEvent(t, 1, "e1", events.EnvStarted, time.Now(), nil))
	if !errors.Is(err, ErrNotApplicable) || !errors.Is(err, events.ErrIllegalTransition) {
		t.Fatalf("err = %v", err)
	}
	if len(v.Envs) != 0 || v.Seq != 1 {
		t.Fatalf("view changed: %+v", v)
	}
	bad := envEvent(t, 2, "e2", events.EnvRequested, time.Now(), nil)
	bad.Data = []byte(`{"resources":"x"}`)
	if err := Apply(v, bad); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("err = %v", err)
	}
}

func TestApplyHosts(t *testing.T) {
	v := NewView()
	join, _ := events.NewHostEvent("h1", events.HostJoined, "host:h1", events.HostInfo{Address: "a:1", CPUs: 8, MemoryMiB: 1024})
	join.Seq = 1
	for i, typ := range []string{"", events.HostDrained, events.HostFailed, events.HostLeft} {
		ev := join
		if typ != "" {
			ev, _ = events.NewHostEvent("h1", typ, "system", nil)
			ev.Seq = uint64(i + 1)
		}
		if err := Apply(v, ev); err != nil {
			t.Fatal(err)
		}
	}
	h := v.Hosts["h1"]
	if h.State != HostLeft || h.Address != "a:1" || h.Capacity.CPUs != 8 || h.Seq != 4 {
		t.Fatalf("host = %+v", h)
	}
	rejoin, _ := events.NewHostEvent("h1", events.HostJoined, "host:h1", events.HostInfo{Address: "b:2", CPUs: 4})
	rejoin.Seq = 5
	if err := Apply(v, rejoin); err != nil || v.Hosts["h1"].State != HostLive || v.Hosts["h1"].Address != "b:2" {
		t.Fatalf("rejoin: %v %+v", err, v.Hosts["h1"])
	}
}

// checkAllocation asserts every host's allocation is the sum of its live environments.
func checkAllocation(t testing.TB, v *View) {
	t.Helper()
	want := map[string]Host{}
	for _, e := range v.Envs {
		if events.Live(e.State) {
			h := want[e.Host]
			h.EnvCount++
			h.Allocated.CPUs += e.Resources.CPUs
			h.Allocated.MemoryMiB += e.Resources.MemoryMiB
			h.Allocated.DiskMiB += e.Resources.DiskMiB
			want[e.Host] = h
		}
	}
	for id, h := range v.Hosts {
		w := want[id]
		if h.EnvCount != w.EnvCount || h.Allocated != w.Allocated {
			t.Fatalf("host %s: allocated %+v in %d envs, live envs hold %+v in %d", id, h.Allocated, h.EnvCount, w.Allocated, w.EnvCount)
		}
		delete(want, id)
	}
	for id, w := range want {
		if w.EnvCount != 0 {
			t.Fatalf("host %s holds %d live envs but is not in the view", id, w.EnvCount)
		}
	}
}

func TestFoldWorkload(t *testing.T) {
	evs := numbered(workload{hosts: 5, envs: 500, events: 10_000, seed: 1}.generate(t))
	if len(evs) != 10_000 {
		t.Fatalf("generated %d events", len(evs))
	}
	v := NewView()
	for i, ev := range evs {
		if err := Apply(v, ev); err != nil {
			t.Fatalf("apply seq %d: %v", ev.Seq, err)
		}
		if i%1000 == 0 {
			checkAllocation(t, v)
		}
	}
	checkAllocation(t, v)
	if len(v.Envs) != 500 || v.Seq != 10_000 {
		t.Fatalf("%d envs, seq %d", len(v.Envs), v.Seq)
	}
	h := v.Hash()
	// Redelivering everything, in any order, changes nothing.
	for i := len(evs) - 1; i >= 0; i-- {
		if err := Apply(v, evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.Hash(); got != h {
		t.Fatalf("hash after redelivery %s, want %s", got, h)
	}
	// The same stream folds to the same hash.
	if got := foldAll(t, evs).Hash(); got != h {
		t.Fatalf("second fold hash %s, want %s", got, h)
	}
}

func TestHashStable(t *testing.T) {
	evs := numbered(workload{hosts: 3, envs: 50, events: 800, seed: 2}.generate(t))
	a := foldAll(t, evs)
	// Rebuild the same maps in another insertion order, through a JSON round trip (as KV does).
	b := NewView()
	ids := sortedKeys(a.Envs)
	for i := len(ids) - 1; i >= 0; i-- {
		b.Envs[ids[i]] = roundTrip(t, a.Envs[ids[i]])
	}
	for id, h := range a.Hosts {
		b.Hosts[id] = roundTrip(t, h)
	}
	if a.Hash() != b.Hash() {
		t.Fatal("hash depends on insertion order or JSON round trip")
	}
	b.Envs[ids[0]].LastError = "x"
	if a.Hash() == b.Hash() {
		t.Fatal("hash ignores a changed field")
	}
	b.Envs[ids[0]] = roundTrip(t, a.Envs[ids[0]])
	delete(b.Hosts, sortedKeys(b.Hosts)[0])
	if a.Hash() == b.Hash() {
		t.Fatal("hash ignores a missing host")
	}
}

// FuzzApply folds arbitrary event sequences over a few environments: the fold never panics,
// keeps host allocation equal to the live environments, and is idempotent.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0, 1, 3, 4, 6, 7, 10, 11})
	f.Add([]byte{0, 16, 1, 17, 2, 12, 18, 13})
	types := []string{events.EnvRequested, events.EnvPlaced, events.EnvRejected, events.EnvStarting, events.EnvStarted,
		events.EnvFailed, events.EnvTouched, events.EnvExec, events.EnvFileWritten, events.EnvFileRead,
		events.EnvDestroyRequested, events.EnvDestroyed, events.EnvLost, events.HostJoined, events.HostFailed, events.HostDrained}
	f.Fuzz(func(t *testing.T, script []byte) {
		v := NewView()
		var evs []*events.Event
		for i, b := range script {
			typ := types[int(b)%len(types)]
			env, host := []string{"e0", "e1", "e2"}[int(b>>4)%3], []string{"h0", "h1"}[int(b>>6)%2]
			var ev *events.Event
			var err error
			switch typ {
			case events.HostJoined, events.HostFailed, events.HostDrained:
				ev, err = events.NewHostEvent(host, typ, "system", events.HostInfo{CPUs: int(b)})
			default:
				ev, err = events.NewEnvEvent(host, env, typ, "t", events.Requested{Owner: "t", Resources: events.Resources{CPUs: int(b % 7), MemoryMiB: int(b)}})
			}
			if err != nil {
				t.Fatal(err)
			}
			ev.Seq = uint64(i + 1)
			evs = append(evs, ev)
			if err := Apply(v, ev); err != nil && !errors.Is(err, ErrNotApplicable) {
				t.Fatal(err)
			}
			checkAllocation(t, v)
		}
		h := v.Hash()
		for _, ev := range evs {
			_ = Apply(v, ev)
		}
		if v.Hash() != h {
			t.Fatal("redelivery changed the view")
		}
	})
}
