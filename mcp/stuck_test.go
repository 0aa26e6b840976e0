// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/router"
)

// sweepFast makes routers end stuck environments after 2 s, looking every 50 ms.
func sweepFast(c *router.Config) {
	c.BootTimeout, c.StuckAfter, c.SweepInterval = 500*time.Millisecond, 2*time.Second, 50*time.Millisecond
}

// TestStuckEnvironmentsEnded leaves environments half-way, as a router that died between its
// appends or a host that never took the placement would: three sweeping routers end each of
// them once, with destroy_requested when the host is live (the host then destroys it) and lost
// when it is gone; a running environment is left alone.
func TestStuckEnvironmentsEnded(t *testing.T) {
	c := newCluster(t, 3, sweepFast, hostStarts, hostSilent)
	for host, types := range map[string][]string{
		"host-left":   {events.HostJoined, events.HostLeft},
		"host-failed": {events.HostJoined, events.HostFailed},
	} {
		for _, typ := range types {
			ev, err := events.NewHostEvent(host, typ, "host:"+host, events.HostInfo{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Log.AppendNew(c.ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name, host string
		types      []string // appended by the dead router (or the test)
		want       string   // the state it ends in
		ended      string   // the event that ended it
		reason     string
	}{
		{"requested on a live host", "host-1", []string{events.EnvRequested}, events.StateDestroyed, events.EnvDestroyRequested, ""},
		{"placed on a host that never takes it", "host-2", []string{events.EnvRequested, events.EnvPlaced}, events.StateDestroyed, events.EnvDestroyRequested, ""},
		{"requested on a host that left", "host-left", []string{events.EnvRequested}, events.StateLost, events.EnvLost, "stayed requested for * and its host host-left left"},
		{"placed on a failed host", "host-failed", []string{events.EnvRequested, events.EnvPlaced}, events.StateLost, events.EnvLost, "stayed placed for * and its host host-failed failed"},
		{"requested on a host that never joined", "host-none", []string{events.EnvRequested}, events.StateLost, events.EnvLost, "stayed requested for * and its host host-none never joined"},
		{"running", "host-1", []string{events.EnvRequested, events.EnvPlaced}, events.StateRunning, "", ""},
	}
	envs := make([]string, len(tests))
	for i, tc := range tests {
		envs[i] = newTestEnv(t, c, tc.host, tc.types...)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agg := events.EnvAggregate(tc.host, envs[i])
			var evs []*events.Event
			eventually(t, func() bool {
				var err error
				evs, _, err = c.Log.Load(c.ctx, agg)
				e, ferr := events.FoldEnv(evs)
				return err == nil && ferr == nil && e.State == tc.want
			}, "%s in state %s", envs[i], tc.want)
			if tc.ended == "" {
				time.Sleep(3 * time.Second) // past StuckAfter: still left alone
				if evs, _, _ = c.Log.Load(c.ctx, agg); evs[len(evs)-1].Type != events.EnvStarted {
					t.Fatalf("a running environment was touched: last event %s", evs[len(evs)-1].Type)
				}
				return
			}
			if n := countTypes(evs, tc.ended); n != 1 {
				t.Fatalf("%d %s events, want exactly 1 from three sweeping routers", n, tc.ended)
			}
			end := evs[len(tc.types)]
			if end.Type != tc.ended || !strings.HasPrefix(end.Principal, "router:router-") {
				t.Fatalf("ended by %s %s, want %s by a router", end.Principal, end.Type, tc.ended)
			}
			var r events.Reason
			var d events.DestroyRequested
			if err := end.DecodeData(&r); err != nil {
				t.Fatal(err)
			}
			if err := end.DecodeData(&d); err != nil {
				t.Fatal(err)
			}
			if tc.ended == events.EnvDestroyRequested && d.Reason != "stuck" {
				t.Errorf("destroy reason %q, want stuck", d.Reason)
			}
			before, after, _ := strings.Cut(tc.reason, "*")
			if !strings.Contains(r.Reason, before) || !strings.HasSuffix(r.Reason, after) {
				t.Errorf("reason %q, want it to contain %q", r.Reason, tc.reason)
			}
		})
	}
}

// newTestEnv appends the first events of a new environment of tenant acme on host.
func newTestEnv(t *testing.T, c *cluster, host string, types ...string) string {
	t.Helper()
	env := strings.ToLower(ulid.Make().String())
	var evs []*events.Event
	for _, typ := range types {
		var data any = events.Placed{Host: host}
		if typ == events.EnvRequested {
			data = events.Requested{Runtime: "python", Owner: "acme", Resources: events.Resources{CPUs: 1, MemoryMiB: 256}, TTLSeconds: 600}
		}
		ev, err := events.NewEnvEvent(host, env, typ, "acme/k1", data)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if _, err := c.Log.AppendNew(c.ctx, evs...); err != nil {
		t.Fatal(err)
	}
	return env
}

func countTypes(evs []*events.Event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// diesBeforePlaced is the event log of a router that dies right after appending requested.
type diesBeforePlaced struct{ router.EventLog }

func (l diesBeforePlaced) Append(ctx context.Context, ev *events.Event, head events.Head) (events.Head, error) {
	if ev.Type == events.EnvPlaced {
		return events.Head{}, errors.New("test: the router died")
	}
	return l.EventLog.Append(ctx, ev, head)
}

// TestStuckCreateStopsCounting: a create whose router died between requested and placed
// counts against its tenant only until a router ends it; then the tenant creates again.
func TestStuckCreateStopsCounting(t *testing.T) {
	oneEach := func(c *router.Config) { sweepFast(c); c.MaxEnvsPerTenant = 1 }
	c := newCluster(t, 1, oneEach, hostStarts)
	dying := c.addRouter("dying", oneEach, func(l router.EventLog) router.EventLog { return diesBeforePlaced{l} })
	acme := router.Principal{Tenant: "acme", KeyID: "k1"}
	req := router.CreateRequest{Runtime: "python"}
	if _, err := dying.Create(c.ctx, acme, req); err == nil || !strings.Contains(err.Error(), "the router died") {
		t.Fatalf("create through the dying router: %v", err)
	}
	_, err := c.routers[0].Create(c.ctx, acme, req)
	var ue *router.UserError
	if !errors.As(err, &ue) || ue.Kind != router.KindLimit {
		t.Fatalf("second create while the first is stuck: %v, want the tenant limit", err)
	}
	start := time.Now()
	eventually(t, func() bool {
		info, err := c.routers[0].Create(c.ctx, acme, req)
		return err == nil && info.Status == events.StateRunning
	}, "a create once the stuck one is ended")
	t.Logf("the tenant could create again %s after the stuck create", time.Since(start).Round(time.Millisecond))
}
