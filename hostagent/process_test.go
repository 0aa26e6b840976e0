// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

func TestRPCProcesses(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	runAgent(t, c, testConfig(t, "h1"), fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python"})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)

	start := func(code string) string {
		t.Helper()
		var res hostrpc.ProcessStartResult
		if e := call(t, c.NC, "h1", hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: env, Code: code}, &res); e != nil {
			t.Fatalf("start: %+v", e)
		}
		if !strings.HasPrefix(res.ProcessID, "p-") {
			t.Fatalf("process id %q", res.ProcessID)
		}
		return res.ProcessID
	}
	op := func(name, id string, timeout time.Duration) (hostrpc.ProcessResult, *hostrpc.Error) {
		t.Helper()
		var res hostrpc.ProcessResult
		e := call(t, c.NC, "h1", name, hostrpc.ProcessRequest{Env: env, ProcessID: id, Timeout: timeout}, &res)
		return res, e
	}

	// A process that ends: wait reports its exit, and then it is forgotten.
	done := start("exit 3")
	res, e := op(hostrpc.OpProcessWait, done, 5*time.Second)
	if e != nil || res.Running || res.ExitCode != 3 || res.Stdout != "exit 3" || !strings.HasPrefix(res.Stderr, PythonPath) {
		t.Fatalf("wait: %+v %+v", res, e)
	}
	if _, e := op(hostrpc.OpProcessRead, done, 0); e == nil || e.Code != hostrpc.CodeNotFound {
		t.Fatalf("read after the end was reported: %+v", e)
	}

	// A running process: read shows its output so far, wait times out, kill ends it.
	held := start("hold on")
	res, e = op(hostrpc.OpProcessRead, held, 0)
	if e != nil || !res.Running || res.Stdout != "hold on" {
		t.Fatalf("read while running: %+v %+v", res, e)
	}
	if _, e := op(hostrpc.OpProcessWait, held, 100*time.Millisecond); e == nil || e.Code != hostrpc.CodeBadRequest ||
		!strings.Contains(e.Message, "timeout_seconds 0.1 is out of range: use 1 to 50") {
		t.Fatalf("wait under the minimum: %+v, want refused (not clamped)", e)
	}
	res, e = op(hostrpc.OpProcessWait, held, time.Second)
	if e != nil || !res.Running {
		t.Fatalf("wait that times out: %+v %+v", res, e)
	}
	res, e = op(hostrpc.OpProcessKill, held, 0)
	if e != nil || res.Running || !res.Killed || res.ExitCode != -1 || res.Stdout != "hold on" {
		t.Fatalf("kill: %+v %+v", res, e)
	}
	for _, name := range []string{hostrpc.OpProcessRead, hostrpc.OpProcessWait, hostrpc.OpProcessKill} {
		if _, e := op(name, "p-nope", 0); e == nil || e.Code != hostrpc.CodeNotFound {
			t.Fatalf("%s of an unknown process: %+v", name, e)
		}
	}
	var start2 hostrpc.ProcessStartResult
	if e := call(t, c.NC, "h1", hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: env, Code: "1", Language: "cobol"}, &start2); e == nil || e.Code != hostrpc.CodeBadRequest {
		t.Fatalf("unknown language: %+v", e)
	}

	// Each process is audited as a background exec when it starts and when it ends.
	waitFor(t, 5*time.Second, "two background exec events of each phase", func() bool {
		n := map[string]int{}
		for _, ev := range history(t, c, "h1", env) {
			var x events.Exec
			if ev.Type == events.EnvExec && ev.DecodeData(&x) == nil && x.Background {
				n[x.Phase]++
			}
		}
		return n[events.ExecStarted] == 2 && n[events.ExecEnded] == 2
	})

	// Destroying the environment kills its processes.
	start("hold again")
	vm := fm.vms[env]
	waitFor(t, 5*time.Second, "the process runs", func() bool { return vm.holding.Load() == 1 })
	appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvDestroyRequested, events.DestroyRequested{By: "tenant-1", Reason: events.ReasonUser}))
	waitState(t, c, "h1", env, events.StateDestroyed, 10*time.Second)
	waitFor(t, 5*time.Second, "the process is killed", func() bool { return vm.holding.Load() == 0 })
}

// TestProcessKeepsEnvironmentAlive checks that a running background process counts as activity:
// the idle timeout destroys the environment only after the process has ended.
func TestProcessKeepsEnvironmentAlive(t *testing.T) {
	c := eventstest.Start(t)
	runAgent(t, c, testConfig(t, "h1"), newFakeMachines())
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python", TTLSeconds: 1})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	var started hostrpc.ProcessStartResult
	if e := call(t, c.NC, "h1", hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: env, Code: "hold"}, &started); e != nil {
		t.Fatalf("start: %+v", e)
	}
	time.Sleep(1500 * time.Millisecond) // past the idle timeout
	if got := state(t, c, "h1", env); got != events.StateRunning {
		t.Fatalf("environment with a running process is %s", got)
	}
	if e := call(t, c.NC, "h1", hostrpc.OpProcessKill, hostrpc.ProcessRequest{Env: env, ProcessID: started.ProcessID}, nil); e != nil {
		t.Fatalf("kill: %+v", e)
	}
	waitState(t, c, "h1", env, events.StateDestroyed, 10*time.Second)
}
