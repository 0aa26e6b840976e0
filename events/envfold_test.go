// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pausedData is the paused event of the fold tests.
var pausedData = Paused{SnapshotBytes: 80 << 20, Location: "host:/var/lib/waggle/paused/e1", PausedMillis: 120}

// foldEvent is an event of environment e1 on h1 at second sec of a fixed day.
func foldEvent(t *testing.T, seq uint64, sec int, typ string, data any) *Event {
	t.Helper()
	ev, err := NewEnvEvent("h1", "e1", typ, "acme/k1", data)
	if err != nil {
		t.Fatal(err)
	}
	ev.Seq, ev.Time = seq, time.Date(2026, 12, 1, 10, 0, sec, 0, time.UTC)
	return ev
}

func TestFoldEnvLifecycle(t *testing.T) {
	req := Requested{Runtime: "python", Name: "n", Owner: "acme", Resources: Resources{CPUs: 1, MemoryMiB: 512}, TTLSeconds: 600}
	at := func(sec int) time.Time { return time.Date(2026, 12, 1, 10, 0, sec, 0, time.UTC) }
	for _, tc := range []struct {
		name  string
		types []string
		want  Env
	}{
		{"requested", []string{EnvRequested},
			Env{State: StateRequested}},
		{"requested then destroyed before placement", []string{EnvRequested, EnvDestroyRequested, EnvDestroyed},
			Env{State: StateDestroyed}},
		{"running with calls", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvExec, EnvFileWritten},
			Env{State: StateRunning, Started: at(3), LastActive: at(5), BootMillis: 1500}},
		{"audit after destroy", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvDestroyRequested, EnvDestroyed, EnvExec},
			Env{State: StateDestroyed, Started: at(3), LastActive: at(6)}},
		{"audit after lost", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvLost, EnvFileRead},
			Env{State: StateLost, Started: at(3), LastActive: at(5), LastError: "host h1 failed"}},
		{"rejected", []string{EnvRequested, EnvPlaced, EnvRejected},
			Env{State: StateRejected, LastError: "host h1 failed"}},
		{"paused", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvPaused},
			Env{State: StatePaused, Started: at(3), LastActive: at(3), Snapshot: &pausedData, PausedAt: at(4)}},
		{"paused and resumed", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvPaused, EnvResumed, EnvExec},
			Env{State: StateRunning, Started: at(3), LastActive: at(6)}},
		{"paused then destroyed", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvPaused, EnvDestroyRequested, EnvDestroyed},
			Env{State: StateDestroyed, Started: at(3), LastActive: at(3), Snapshot: &pausedData, PausedAt: at(4)}},
		{"paused, lost with its host, resumed elsewhere", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvPaused, EnvLost, EnvMoved},
			Env{State: StateMoved, Started: at(3), LastActive: at(3), Snapshot: &pausedData, PausedAt: at(4),
				LastError: "host h1 failed", MovedTo: "e2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var evs []*Event
			for i, typ := range tc.types {
				var data any
				switch typ {
				case EnvRequested:
					data = req
				case EnvStarted:
					data = Started{BootMillis: 1500}
				case EnvPaused:
					data = pausedData
				case EnvResumed:
					data = Resumed{ResumeMillis: 200}
				case EnvLost, EnvRejected, EnvFailed:
					data = Reason{Reason: "host h1 failed"}
				case EnvMoved:
					data = Moved{To: "e2"}
				}
				evs = append(evs, foldEvent(t, uint64(i+1), i, typ, data))
			}
			got, err := FoldEnv(evs)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.ID, want.Host, want.Name, want.Owner, want.Runtime = "e1", "h1", "n", "acme", "python"
			want.Resources, want.TTLSeconds, want.Created, want.Seq = req.Resources, 600, at(0), uint64(len(evs))
			if want.BootMillis == 0 && !want.Started.IsZero() {
				want.BootMillis = 1500
			}
			if got.State != want.State || got.Started != want.Started || got.LastActive != want.LastActive ||
				got.LastError != want.LastError || got.Seq != want.Seq || got.Created != want.Created ||
				got.BootMillis != want.BootMillis || got.Owner != want.Owner || got.Host != want.Host ||
				!reflect.DeepEqual(got.Snapshot, want.Snapshot) || got.PausedAt != want.PausedAt || got.MovedTo != want.MovedTo {
				t.Fatalf("fold of %v:\n got %+v\nwant %+v", tc.types, got, want)
			}
		})
	}
}

// TestFoldEnvRefuses: an event the environment cannot take is refused with an error naming it,
// and leaves the environment as it was.
func TestFoldEnvRefuses(t *testing.T) {
	req := Requested{Runtime: "shell", Owner: "acme"}
	for _, tc := range []struct {
		name   string
		before []string
		typ    string
	}{
		{"first event not requested", nil, EnvPlaced},
		{"requested twice", []string{EnvRequested}, EnvRequested},
		{"exec before it ran", []string{EnvRequested, EnvPlaced, EnvStarting}, EnvExec},
		{"touched before it ran", []string{EnvRequested}, EnvTouched},
		{"started after destroyed", []string{EnvRequested, EnvDestroyRequested, EnvDestroyed}, EnvStarted},
		{"unknown type", []string{EnvRequested}, "no-such-type"},
		{"paused while starting", []string{EnvRequested, EnvPlaced, EnvStarting}, EnvPaused},
		{"resumed while running", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted}, EnvResumed},
		{"moved while running", []string{EnvRequested, EnvPlaced, EnvStarting, EnvStarted}, EnvMoved},
		{"moved twice", []string{EnvRequested, EnvLost, EnvMoved}, EnvMoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Env
			for i, typ := range tc.before {
				var data any
				switch typ {
				case EnvRequested:
					data = req
				case EnvMoved:
					data = Moved{To: "e2"}
				}
				if err := e.Apply(foldEvent(t, uint64(i+1), i, typ, data)); err != nil {
					t.Fatal(err)
				}
			}
			before := e
			if e.Allows(tc.typ) {
				t.Fatalf("Allows(%q) in %q", tc.typ, e.State)
			}
			err := e.Apply(foldEvent(t, 99, 50, tc.typ, nil))
			if !errors.Is(err, ErrIllegalTransition) || !strings.Contains(err.Error(), "event 99") {
				t.Fatalf("Apply(%s) = %v, want an illegal transition naming event 99", tc.typ, err)
			}
			if e.State != before.State || e.Seq != before.Seq {
				t.Fatalf("refused event changed the environment: %+v -> %+v", before, e)
			}
		})
	}
}

// TestAllowsAgreesWithApply: Allows says yes exactly where Apply takes the event.
func TestAllowsAgreesWithApply(t *testing.T) {
	types := []string{EnvRequested, EnvPlaced, EnvRejected, EnvStarting, EnvStarted, EnvFailed, EnvTouched, EnvExec,
		EnvFileWritten, EnvFileRead, EnvDestroyRequested, EnvDestroyed, EnvLost, "no-such-type"}
	paths := [][]string{{}, {EnvRequested}, {EnvRequested, EnvPlaced}, {EnvRequested, EnvPlaced, EnvStarting},
		{EnvRequested, EnvPlaced, EnvStarting, EnvStarted}, {EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvDestroyRequested},
		{EnvRequested, EnvPlaced, EnvStarting, EnvStarted, EnvDestroyRequested, EnvDestroyed},
		{EnvRequested, EnvPlaced, EnvRejected}, {EnvRequested, EnvPlaced, EnvStarting, EnvFailed}}
	for _, path := range paths {
		var e Env
		for i, typ := range path {
			var data any
			if typ == EnvRequested {
				data = Requested{Runtime: "shell"}
			}
			if err := e.Apply(foldEvent(t, uint64(i+1), i, typ, data)); err != nil {
				t.Fatal(err)
			}
		}
		for _, typ := range types {
			var data any
			if typ == EnvRequested {
				data = Requested{Runtime: "shell"}
			}
			probe := e
			err := probe.Apply(foldEvent(t, 100, 30, typ, data))
			if got := e.Allows(typ); got != (err == nil) {
				t.Errorf("after %v: Allows(%q) = %v, Apply error %v", path, typ, got, err)
			}
		}
	}
}
