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

// TestWarmPool: pool VMs are booted ahead and count against capacity; a matching placement
// takes one (started.warm) and the pool refills; a restarted agent adopts the claimed VM and
// kills the idle pool VMs; a placement of another size cold-boots, evicting pool VMs for room.
func TestWarmPool(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.WarmPool = 1
	cfg.WarmRuntimes = []string{"python", "node"}
	cfg.Capacity = Capacity{MemoryMiB: 1024, CPUs: 4, MaxEnvironments: 4}
	cfg.DefaultResources = events.Resources{CPUs: 1, MemoryMiB: 256}
	cfg.Drain = DrainKeep
	a, stop := runAgent(t, c, cfg, fm)
	waitFor(t, 5*time.Second, "2 pool VMs", func() bool { return len(fm.running()) == 2 })
	if used, n := a.Usage(); n != 2 || used.MemoryMiB != 512 {
		t.Fatalf("usage with a full pool: %+v, %d", used, n)
	}

	warm := newEnvID()
	place(t, c, "h1", warm, events.Requested{Runtime: "python"})
	waitState(t, c, "h1", warm, events.StateRunning, 5*time.Second)
	var st events.Started
	if err := lastOf(history(t, c, "h1", warm), events.EnvStarted).DecodeData(&st); err != nil || !st.Warm {
		t.Fatalf("started %+v, %v: want warm", st, err)
	}
	waitFor(t, 5*time.Second, "pool refilled", func() bool { return len(fm.running()) == 3 })

	// 512 MiB does not fit beside 3 x 256 MiB: the idle pool VMs make room.
	cold := newEnvID()
	place(t, c, "h1", cold, events.Requested{Runtime: "python", Resources: events.Resources{CPUs: 1, MemoryMiB: 512}})
	waitState(t, c, "h1", cold, events.StateRunning, 5*time.Second)
	st = events.Started{}
	if err := lastOf(history(t, c, "h1", cold), events.EnvStarted).DecodeData(&st); err != nil || st.Warm {
		t.Fatalf("started %+v, %v: want cold", st, err)
	}

	stop() // drain=keep: environment VMs stay, pool VMs go
	for _, id := range fm.running() {
		if strings.HasPrefix(id, warmIDPrefix) && id != claimedVM(t, cfg, warm) {
			t.Fatalf("idle pool VM %s survived the stop", id)
		}
	}
	cfg.WarmPool = 0
	runAgent(t, c, cfg, fm)
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: warm, Code: "1"}, nil); e != nil {
		t.Fatalf("exec in adopted pool VM: %+v", e)
	}
	if n := len(fm.running()); n != 2 {
		t.Fatalf("%d VMs after restart, want 2: %v", n, fm.running())
	}
}

func claimedVM(t *testing.T, cfg Config, env string) string {
	t.Helper()
	claims, err := (&warmPool{a: &Agent{cfg: cfg}}).claims()
	if err != nil {
		t.Fatal(err)
	}
	for vm, e := range claims {
		if e == env {
			return vm
		}
	}
	t.Fatalf("no claim for %s", env)
	return ""
}
