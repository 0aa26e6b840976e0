// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/internal/metricstest"
)

// TestMetrics: boots, placements (warm, cold, rejected), RPC latency, VMs by state, capacity
// and the warm pool show in the registry the agent was given, labelled with its host id, and
// the exposition passes the Prometheus linter. An exec's reply says how long the host and the
// guest took.
func TestMetrics(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, "h1")
	cfg.Metrics = reg
	cfg.WarmPool = 1
	cfg.WarmRuntimes = []string{"python"}
	cfg.Capacity = Capacity{MemoryMiB: 1024, CPUs: 4, MaxEnvironments: 4}
	cfg.DefaultResources = events.Resources{CPUs: 1, MemoryMiB: 256}
	runAgent(t, c, cfg, fm)
	waitFor(t, 5*time.Second, "a pool VM", func() bool { return len(fm.running()) == 1 })

	warm, cold, big := newEnvID(), newEnvID(), newEnvID()
	place(t, c, "h1", warm, events.Requested{Runtime: "python"})
	waitState(t, c, "h1", warm, events.StateRunning, 5*time.Second)
	place(t, c, "h1", cold, events.Requested{Runtime: "shell"})
	waitState(t, c, "h1", cold, events.StateRunning, 5*time.Second)
	place(t, c, "h1", big, events.Requested{Runtime: "shell", Resources: events.Resources{CPUs: 1, MemoryMiB: 4096}})
	waitState(t, c, "h1", big, events.StateRejected, 5*time.Second)
	// The rejection evicted the idle pool VM (as any placement that does not fit does); the pool
	// boots another.
	waitFor(t, 5*time.Second, "the pool refilled", func() bool {
		return metricstest.Value(t, reg, `waggle_hostagent_vms{host="h1",state="warm"}`) == 1
	})

	var res hostrpc.ExecResult
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: cold, Code: "echo hi"}, &res); e != nil {
		t.Fatal(e)
	}
	if res.Timing == nil || res.Timing.HostMS <= 0 || res.Timing.GuestMS <= 0 {
		t.Errorf("exec timing %+v: want host_ms and guest_ms", res.Timing)
	}
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: "nope", Code: "1"}, nil); e == nil {
		t.Fatal("exec in an unknown environment succeeded")
	}

	fm.bootErr = errors.New("no kernel")
	failed := newEnvID()
	place(t, c, "h1", failed, events.Requested{Runtime: "shell"})
	waitState(t, c, "h1", failed, events.StateFailed, 5*time.Second)

	metricstest.Expect(t, reg, map[string]float64{
		`waggle_hostagent_placements_total{host="h1",result="started_warm"}`:            1,
		`waggle_hostagent_placements_total{host="h1",result="started"}`:                 1,
		`waggle_hostagent_placements_total{host="h1",result="rejected"}`:                1,
		`waggle_hostagent_placements_total{host="h1",result="failed"}`:                  1,
		`waggle_hostagent_boots_total{host="h1",purpose="pool",result="ok"}`:            3,
		`waggle_hostagent_boots_total{host="h1",purpose="environment",result="ok"}`:     1,
		`waggle_hostagent_boots_total{host="h1",purpose="environment",result="failed"}`: 1,
		`waggle_hostagent_boot_duration_seconds_count{host="h1",purpose="environment"}`: 2,
		`waggle_hostagent_rpc_requests_total{code="ok",host="h1",op="exec"}`:            1,
		`waggle_hostagent_rpc_requests_total{code="not_found",host="h1",op="exec"}`:     1,
		`waggle_hostagent_rpc_duration_seconds_count{host="h1",op="exec"}`:              2,
		`waggle_hostagent_guest_exec_duration_seconds_count{host="h1"}`:                 1,
		`waggle_hostagent_rpc_in_flight{host="h1"}`:                                     0,
		`waggle_hostagent_vms{host="h1",state="running"}`:                               2,
		`waggle_hostagent_vms{host="h1",state="warm"}`:                                  1,
		`waggle_hostagent_vms{host="h1",state="booting"}`:                               0,
		`waggle_hostagent_environments{host="h1"}`:                                      2,
		`waggle_hostagent_capacity{host="h1",resource="memory_bytes"}`:                  1024 << 20,
		`waggle_hostagent_capacity_used{host="h1",resource="memory_bytes"}`:             768 << 20,
		`waggle_hostagent_capacity_free{host="h1",resource="environments"}`:             1,
		`waggle_hostagent_capacity_used{host="h1",resource="cpus"}`:                     3,
		`waggle_hostagent_warm_pool_ready{host="h1",runtime="python"}`:                  1,
		`waggle_hostagent_warm_pool_target{host="h1"}`:                                  1,
		`waggle_hostagent_boots_queued{host="h1"}`:                                      0,
	})
	metricstest.Lint(t, reg)
}
