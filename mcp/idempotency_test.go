// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/waggle-dev/waggle/events"
)

// TestIdempotentCreatesRaceThroughTwoRouters: 12 creates with one idempotency key at once,
// spread over two routers, all return one environment, and the log holds exactly one; a
// rejecting host moves the key to the environment placed elsewhere, which retries return too.
func TestIdempotentCreatesRaceThroughTwoRouters(t *testing.T) {
	c := newCluster(t, 2, noTenantLimits, hostRejects, hostStarts, hostStarts)
	key := c.key("acme")
	args := map[string]any{"runtime": "shell", argIdempotencyKey: "retry-me"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	for i := range 12 {
		cl := c.client(key, "")
		cl.rr.n.Add(uint64(i)) // spread the calls over both routers
		wg.Go(func() {
			var env envResult
			cl.ok(toolCreate, args, &env)
			mu.Lock()
			ids[env.ID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("one key gave %d environments: %v", len(ids), ids)
	}
	var started []string
	if err := c.Log.Scan(c.ctx, events.EnvSubject("*", "*", events.EnvStarted), 0, func(ev *events.Event) error {
		started = append(started, ev.Env)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for id := range ids {
		if len(started) != 1 || started[0] != id {
			t.Fatalf("started environments %v, want only %s", started, id)
		}
	}

	cl := c.client(key, "")
	var env envResult
	cl.ok(toolCreate, args, &env)
	if ids[env.ID] == 0 || env.Status != events.StateRunning || env.Host == "host-1" {
		t.Fatalf("retry later: %+v, want the one environment %v running (not on the rejecting host-1)", env, ids)
	}
	// Destroyed since: a retry says so rather than starting another.
	cl.ok(toolDestroy, envArgs(env.ID), nil)
	var again envResult
	cl.ok(toolCreate, args, &again)
	if again.ID != env.ID || again.Status != events.StateDestroyed {
		t.Fatalf("retry after destroy: %+v", again)
	}

	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"runtime": "python", argIdempotencyKey: "retry-me"}, "was first used to create environment " + env.ID + " with other arguments (runtime shell"},
		{map[string]any{"runtime": "shell", argIdempotencyKey: strings.Repeat("k", 129)}, "idempotency_key must be at most 128 printable characters"},
		{map[string]any{"runtime": "shell", argIdempotencyKey: 7}, "idempotency_key must be a string"},
	} {
		if msg := cl.fails(toolCreate, tc.args); !strings.Contains(msg, tc.want) {
			raw, _ := json.Marshal(tc.args)
			t.Errorf("create %s: %q, want %q", raw, msg, tc.want)
		}
	}
}
