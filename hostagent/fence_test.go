// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// startEnv places a shell environment on host and waits until it runs.
func startEnv(t *testing.T, c *eventstest.Node, host string) string {
	t.Helper()
	env := newEnvID()
	place(t, c, host, env, events.Requested{Runtime: "shell", TTLSeconds: 600})
	waitState(t, c, host, env, events.StateRunning, 10*time.Second)
	return env
}

// TestFenceLostEnvironment: once the cluster declares an environment lost (its host was given
// up while it was paused, say), the host refuses every call on it, stops its VM and frees its
// capacity, while its other environments go on.
func TestFenceLostEnvironment(t *testing.T) {
	c := eventstest.Start(t)
	machines := newFakeMachines()
	a, _ := runAgent(t, c, testConfig(t, "h1"), machines)
	doomed, kept := startEnv(t, c, "h1"), startEnv(t, c, "h1")
	usedBefore, _ := a.Usage()

	// A peer's failure detection, as the log sees it: lost appended by someone else.
	evs, head, err := c.Log.Load(t.Context(), events.EnvAggregate("h1", doomed))
	if err != nil || len(evs) == 0 {
		t.Fatal(err)
	}
	lost := mustEvent(t, "h1", doomed, events.EnvLost, events.Reason{Reason: "host h1 failed (detected by h2)"})
	if _, err := c.Log.Append(t.Context(), lost, head); err != nil {
		t.Fatal(err)
	}
	// The call check comes first, whatever the consumer has done yet.
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: doomed, Code: "echo hi", Language: "shell"}, nil); e == nil || e.Code != hostrpc.CodeNotRunning {
		t.Fatalf("exec on a lost environment: %+v, want not_running", e)
	}
	waitFor(t, 10*time.Second, "the lost environment's VM stopped", func() bool {
		for _, id := range machines.running() {
			if id == doomed {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "its capacity released", func() bool {
		used, _ := a.Usage()
		return used.MemoryMiB < usedBefore.MemoryMiB
	})
	var res hostrpc.ExecResult
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: kept, Code: "echo hi", Language: "shell"}, &res); e != nil {
		t.Fatalf("exec on the other environment: %+v", e)
	}
}

// TestFenceFailedHost: host.failed for this host's own incarnation fences every environment
// (lost, VM stopped) and the host announces a new incarnation, which takes placements; a
// failure of another incarnation changes nothing.
func TestFenceFailedHost(t *testing.T) {
	c := eventstest.Start(t)
	machines := newFakeMachines()
	a, _ := runAgent(t, c, testConfig(t, "h1"), machines)
	envs := []string{startEnv(t, c, "h1"), startEnv(t, c, "h1")}

	stale := mustEvent(t, "h1", "", events.HostFailed, events.HostFailure{DetectedBy: "h2", JoinSeq: a.currentJoin() + 1000})
	stale.Env = ""
	if _, err := c.Log.AppendNew(t.Context(), stale); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := len(machines.running()); got != 2 {
		t.Fatalf("a failure of another incarnation stopped VMs: %d left", got)
	}

	joinSeq := a.currentJoin()
	failed := mustEvent(t, "h1", "", events.HostFailed, events.HostFailure{DetectedBy: "h2", JoinSeq: joinSeq})
	failed.Env = ""
	if _, err := c.Log.AppendNew(t.Context(), failed); err != nil {
		t.Fatal(err)
	}
	for _, env := range envs {
		waitState(t, c, "h1", env, events.StateLost, 10*time.Second)
	}
	waitFor(t, 10*time.Second, "every VM stopped", func() bool { return len(machines.running()) == 0 })
	waitFor(t, 10*time.Second, "a new incarnation", func() bool { return a.currentJoin() > joinSeq })
	hevs, _, err := c.Log.Load(t.Context(), events.HostAggregate("h1"))
	if err != nil || hevs[len(hevs)-1].Type != events.HostJoined {
		t.Fatalf("host events %v (%v), want a host.joined last", types(hevs), err)
	}
	startEnv(t, c, "h1") // placements are taken again
}

// TestHostFailedWithoutHistory: a departed member that never appended an event (another
// cluster's, or a forged name) is ignored, not a crash.
func TestHostFailedWithoutHistory(t *testing.T) {
	c := eventstest.Start(t)
	a, _ := runAgent(t, c, testConfig(t, "h1"), newFakeMachines())
	if err := a.hostFailed(context.Background(), "never-seen", 0); err != nil {
		t.Fatal(err)
	}
}

// TestFailedExecAudited: an exec the guest could not carry out is audited all the same, with
// the error, so nothing that was attempted goes unrecorded.
func TestFailedExecAudited(t *testing.T) {
	c := eventstest.Start(t)
	machines := newFakeMachines()
	runAgent(t, c, testConfig(t, "h1"), machines)
	env := startEnv(t, c, "h1")
	machines.mu.Lock()
	machines.vms[env].alive.Store(false) // the guest connection breaks
	machines.mu.Unlock()
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "echo hi", Language: "shell"}, nil); e == nil || e.Code != hostrpc.CodeInternal {
		t.Fatalf("exec with a broken guest: %+v, want internal", e)
	}
	ev := lastOf(history(t, c, "h1", env), events.EnvExec)
	var x events.Exec
	if ev == nil || ev.DecodeData(&x) != nil || x.Error == "" || x.ExitCode != -1 || x.CodeSHA256 != events.Hash([]byte("echo hi")) {
		t.Fatalf("exec event %+v (%+v), want one with the error and the code's hash", ev, x)
	}
}
