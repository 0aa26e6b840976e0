// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// TestProcessesWithRealHostAgent drives the background process tools through a real MCP client,
// the router and the real host agent (with in-memory VMs).
func TestProcessesWithRealHostAgent(t *testing.T) {
	c := newCluster(t, 1, nil)
	startRealAgent(t, c, "real-1")
	cl := c.client(c.key("acme"), "")
	globex := c.client(c.key("globex"), "")
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	with := func(kv ...any) map[string]any { return envArgs(env.ID, kv...) }

	// A process that ends: wait_process returns its result, after which it is forgotten.
	var started hostrpc.ProcessStartResult
	cl.ok(toolStart, with("code", "print(6*7)"), &started)
	var res hostrpc.ProcessResult
	cl.ok(toolWaitProc, with(argProcess, started.ProcessID, "timeout_seconds", 10), &res)
	if res.Running || res.Stdout != "42\n" || res.ExitCode != 0 || res.ProcessID != started.ProcessID {
		t.Fatalf("wait_process: %+v", res)
	}
	if msg := cl.fails(toolReadProc, with(argProcess, started.ProcessID)); !strings.Contains(msg, "no process "+started.ProcessID) {
		t.Errorf("read_process after its end was returned: %q", msg)
	}

	// A process that runs until killed: read_process shows its output so far, a short wait
	// returns it still running, kill_process ends it.
	cl.ok(toolStart, with("code", "serve_forever()", "timeout_seconds", 3600), &started)
	cl.ok(toolReadProc, with(argProcess, started.ProcessID), &res)
	if !res.Running || !strings.Contains(res.Stdout, "serve_forever()") {
		t.Fatalf("read_process while running: %+v", res)
	}
	cl.ok(toolWaitProc, with(argProcess, started.ProcessID, "timeout_seconds", 1), &res)
	if !res.Running {
		t.Fatalf("wait_process that times out: %+v", res)
	}
	notFound := `environment "` + env.ID + `" not found`
	if msg := globex.fails(toolKillProc, with(argProcess, started.ProcessID)); !strings.Contains(msg, notFound) {
		t.Errorf("globex kill_process: %q, want %q", msg, notFound)
	}
	cl.ok(toolKillProc, with(argProcess, started.ProcessID), &res)
	if res.Running || !res.Killed || res.ExitCode != -1 {
		t.Fatalf("kill_process: %+v", res)
	}

	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{toolStart, with("code", "1", "timeout_seconds", 3601), "timeout_seconds 3601 is out of range: use 1 to 3600"},
		{toolWaitProc, with(argProcess, "p-1", "timeout_seconds", 51), "timeout_seconds 51 is out of range: use 1 to 50"},
		{toolReadProc, with(), "process_id is required"},
		{toolKillProc, with(argProcess, "p-nope"), "no process p-nope"},
		{toolReadProc, with(argProcess, "p-1", "timeout_seconds", 1), `unknown argument "timeout_seconds"`},
	} {
		if msg := cl.fails(tc.tool, tc.args); !strings.Contains(msg, tc.want) {
			t.Errorf("%s(%v): %q, want %q", tc.tool, tc.args, msg, tc.want)
		}
	}

	// Processes are audited as background execs when they start and when they end.
	if got := backgroundExecs(t, c, env); len(got[events.ExecStarted]) != 2 || len(got[events.ExecEnded]) != 2 {
		t.Errorf("background exec events %v, want 2 started and 2 ended", got)
	}
}

// backgroundExecs are the code hashes of env's background exec events by phase.
func backgroundExecs(t *testing.T, c *cluster, env envResult) map[string][]string {
	t.Helper()
	evs, _, err := c.Log.Load(c.ctx, events.EnvAggregate(env.Host, env.ID))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, ev := range evs {
		var x events.Exec
		if ev.Type == events.EnvExec && ev.DecodeData(&x) == nil && x.Background {
			out[x.Phase] = append(out[x.Phase], x.CodeSHA256)
		}
	}
	return out
}

// TestProcessAuditedWhenDestroyedAtOnce: a process started and its environment destroyed at
// once still leaves the exec event of its start, with the code's hash and the caller.
func TestProcessAuditedWhenDestroyedAtOnce(t *testing.T) {
	c := newCluster(t, 1, nil)
	startRealAgent(t, c, "real-1")
	cl := c.client(c.key("acme"), "")
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	code := "serve_forever()"
	var started hostrpc.ProcessStartResult
	cl.ok(toolStart, envArgs(env.ID, "code", code, "timeout_seconds", 3600), &started)
	cl.ok(toolDestroy, envArgs(env.ID), nil)
	got := backgroundExecs(t, c, env)
	if hashes := got[events.ExecStarted]; len(hashes) != 1 || hashes[0] != events.Hash([]byte(code)) {
		t.Fatalf("started exec events %v, want one with the hash of %q", got, code)
	}
}
