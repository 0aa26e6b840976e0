// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// failingLog fails the first append of one event type: after storing it (its ack lost) or
// before (the publish never arrived).
type failingLog struct {
	EventLog
	typ    string
	stored bool
	failed atomic.Bool
}

var errAckLost = errors.New("test: ack lost")

func (l *failingLog) Append(ctx context.Context, ev *events.Event, head events.Head) (events.Head, error) {
	if ev.Type != l.typ || !l.failed.CompareAndSwap(false, true) {
		return l.EventLog.Append(ctx, ev, head)
	}
	if l.stored {
		if _, err := l.EventLog.Append(ctx, ev, head); err != nil {
			return events.Head{}, err
		}
	}
	return events.Head{}, errAckLost
}

// TestStartedAppendFailureStillServes: when the started append fails after the VM booted
// (its ack lost, or never stored), the placement's redelivery finishes the report and the
// environment is served, with one VM and one started event.
func TestStartedAppendFailureStillServes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stored bool
	}{
		{"ack lost after the event was stored", true},
		{"append failed before it was stored", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := eventstest.Start(t)
			fm := newFakeMachines()
			log := &failingLog{EventLog: c.Log, typ: events.EnvStarted, stored: tc.stored}
			runAgentOn(t, c, log, testConfig(t, "h1"), fm)
			env := newEnvID()
			place(t, c, "h1", env, events.Requested{})
			waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
			waitFor(t, 10*time.Second, "the environment served", func() bool {
				return call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "1"}, nil) == nil
			})
			if !log.failed.Load() {
				t.Fatal("the started append never failed")
			}
			evs := history(t, c, "h1", env)
			if n := countType(evs, events.EnvStarted); n != 1 {
				t.Errorf("%d started events, want 1", n)
			}
			if n := fm.launches.Load(); n != 1 {
				t.Errorf("%d launches, want 1", n)
			}
		})
	}
}

// TestDestroyNeverPlaced: an environment whose router died between requested and placed is
// destroyed on request by the host it was meant for: no VM, destroyed appended.
func TestDestroyNeverPlaced(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	a, _ := runAgent(t, c, testConfig(t, "h1"), fm)
	env := newEnvID()
	appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvRequested, events.Requested{Runtime: "python"}),
		mustEvent(t, "h1", env, events.EnvDestroyRequested, events.DestroyRequested{By: "router:r1", Reason: "boot_timeout"}))
	waitState(t, c, "h1", env, events.StateDestroyed, 10*time.Second)
	if n := fm.launches.Load(); n != 0 {
		t.Errorf("%d launches for an environment never placed", n)
	}
	if _, n := a.Usage(); n != 0 {
		t.Errorf("%d reservations left", n)
	}
}
