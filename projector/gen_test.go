// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
)

// workload generates valid histories: hosts join first, then every environment follows a
// random legal lifecycle; the environments' histories are interleaved at random.
type workload struct {
	hosts, envs, events int
	seed                uint64
}

// generate returns exactly w.events events (or fewer if the lifecycles are shorter), with no
// sequence numbers: the order is the append order.
func (w workload) generate(t testing.TB) []*events.Event {
	t.Helper()
	r := rand.New(rand.NewPCG(w.seed, w.seed^0x9e3779b97f4a7c15))
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := 0
	mk := func(ev *events.Event, err error) *events.Event {
		if err != nil {
			t.Fatal(err)
		}
		clock++
		ev.Time = base.Add(time.Duration(clock) * time.Millisecond)
		return ev
	}
	var out []*events.Event
	hostIDs := make([]string, w.hosts)
	for i := range hostIDs {
		hostIDs[i] = fmt.Sprintf("h%d", i)
		out = append(out, mk(events.NewHostEvent(hostIDs[i], events.HostJoined, "host:"+hostIDs[i],
			events.HostInfo{Address: fmt.Sprintf("10.0.0.%d:7946", i+1), CPUs: 64, MemoryMiB: 1 << 18, MaxEnvironments: 1000})))
	}
	avgAudit := max(0, w.events/max(w.envs, 1)-3)
	queues := make([][]*events.Event, w.envs, w.envs+1)
	for i := range queues {
		host, env := hostIDs[r.IntN(len(hostIDs))], fmt.Sprintf("env-%04d", i)
		tenant := fmt.Sprintf("t%d", r.IntN(10))
		ev := func(typ, principal string, data any) *events.Event {
			return mk(events.NewEnvEvent(host, env, typ, principal, data))
		}
		q := []*events.Event{
			ev(events.EnvRequested, tenant, events.Requested{Runtime: []string{"python", "node", "shell"}[r.IntN(3)],
				Name: "n" + env, Owner: tenant, Resources: events.Resources{CPUs: 1 + r.IntN(4), MemoryMiB: 256 << r.IntN(4)},
				TTLSeconds: int64(60 * (1 + r.IntN(30))), Labels: map[string]string{"i": fmt.Sprint(i)}}),
			ev(events.EnvPlaced, tenant, events.Placed{Host: host}),
		}
		switch p := r.Float64(); {
		case p < 0.04:
			q = append(q, ev(events.EnvRejected, "host:"+host, events.Reason{Reason: "no room"}))
		case p < 0.08:
			q = append(q, ev(events.EnvStarting, "host:"+host, nil), ev(events.EnvFailed, "host:"+host, events.Reason{Reason: "boot failed"}))
		default:
			q = append(q, ev(events.EnvStarting, "host:"+host, nil), ev(events.EnvStarted, "host:"+host, events.Started{BootMillis: 2400}))
			for range r.IntN(2*avgAudit + 1) {
				switch r.IntN(4) {
				case 0:
					q = append(q, ev(events.EnvTouched, "host:"+host, events.Touched{LastActive: base.Add(time.Duration(clock) * time.Millisecond), Calls: 1 + r.IntN(5)}))
				case 1:
					q = append(q, ev(events.EnvExec, tenant, events.Exec{Language: "python", CodeSHA256: fmt.Sprintf("%064x", r.Uint64()),
						CodeSize: r.IntN(4096), ExitCode: r.IntN(3), DurationMS: int64(r.IntN(900))}))
				case 2:
					q = append(q, ev(events.EnvFileWritten, tenant, events.File{Path: "/home/sandbox/a.py", Size: int64(r.IntN(1 << 16)), SHA256: fmt.Sprintf("%064x", r.Uint64())}))
				default:
					q = append(q, ev(events.EnvFileRead, tenant, events.File{Path: "/etc/hostname", Size: 9}))
				}
			}
			switch p := r.Float64(); {
			case p < 0.7:
				q = append(q, ev(events.EnvDestroyRequested, tenant, events.DestroyRequested{By: tenant, Reason: events.ReasonUser}),
					ev(events.EnvDestroyed, "host:"+host, nil))
			case p < 0.8:
				q = append(q, ev(events.EnvDestroyRequested, "system", events.DestroyRequested{By: "system", Reason: events.ReasonTTL}))
			case p < 0.9:
				q = append(q, ev(events.EnvLost, "host:"+host, events.Reason{Reason: "vm gone"}))
			}
		}
		queues[i] = q
	}
	// Host lifecycle changes in the middle of it all.
	queues = append(queues, []*events.Event{
		mk(events.NewHostEvent(hostIDs[0], events.HostDrained, "system", nil)),
		mk(events.NewHostEvent(hostIDs[len(hostIDs)-1], events.HostFailed, "host:"+hostIDs[0], events.HostFailure{DetectedBy: hostIDs[0]})),
	})
	// A uniformly random interleaving keeping each queue's order.
	var picks []int
	for i, q := range queues {
		for range q {
			picks = append(picks, i)
		}
	}
	r.Shuffle(len(picks), func(i, j int) { picks[i], picks[j] = picks[j], picks[i] })
	next := make([]int, len(queues))
	for _, qi := range picks {
		out = append(out, queues[qi][next[qi]])
		next[qi]++
	}
	if w.events > 0 && len(out) > w.events {
		out = out[:w.events]
	}
	return out
}

// numbered gives the events stream sequences 1..n, as if appended to an empty log.
func numbered(evs []*events.Event) []*events.Event {
	for i, ev := range evs {
		ev.Seq = uint64(i + 1)
	}
	return evs
}

// foldAll folds events in sequence order into a fresh view, failing on any refused event.
func foldAll(t testing.TB, evs []*events.Event) *View {
	t.Helper()
	v := NewView()
	evs = slices.Clone(evs)
	slices.SortStableFunc(evs, func(a, b *events.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, ev := range evs {
		if err := Apply(v, ev); err != nil {
			t.Fatalf("apply seq %d: %v", ev.Seq, err)
		}
	}
	return v
}

func roundTrip[T any](t testing.TB, v *T) *T {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func roundTripJSON(t testing.TB, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
