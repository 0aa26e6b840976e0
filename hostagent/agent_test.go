// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

func TestPlacementAdmitsAndRejects(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.Capacity = Capacity{MemoryMiB: 1024, CPUs: 4, MaxEnvironments: 2}
	runAgent(t, c, cfg, fm)

	small := events.Requested{Runtime: "python", Resources: events.Resources{CPUs: 1, MemoryMiB: 256}, TTLSeconds: 600}
	tests := []struct {
		name       string
		req        events.Requested
		wantState  string
		wantReason string
	}{
		{"first fits", small, events.StateRunning, ""},
		{"too much memory", events.Requested{Runtime: "node", Resources: events.Resources{CPUs: 1, MemoryMiB: 2048}}, events.StateRejected, "out of memory: 2048 MiB requested, 768 of 1024 MiB free"},
		{"too many cpus", events.Requested{Runtime: "node", Resources: events.Resources{CPUs: 4, MemoryMiB: 128}}, events.StateRejected, "out of cpus: 4 requested, 3 of 4 free"},
		{"second fits", small, events.StateRunning, ""},
		{"max environments", small, events.StateRejected, "out of environments: 2 of 2 in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnvID()
			place(t, c, "h1", env, tt.req)
			waitFor(t, 10*time.Second, "a decision", func() bool {
				return events.Terminal(state(t, c, "h1", env)) || state(t, c, "h1", env) == events.StateRunning
			})
			evs := history(t, c, "h1", env)
			if got := state(t, c, "h1", env); got != tt.wantState {
				t.Fatalf("state %s, want %s", got, tt.wantState)
			}
			if tt.wantReason != "" {
				var r events.Reason
				if err := lastOf(evs, events.EnvRejected).DecodeData(&r); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(r.Reason, tt.wantReason) {
					t.Fatalf("reason %q, want it to contain %q", r.Reason, tt.wantReason)
				}
			} else if lastOf(evs, events.EnvStarted).Principal != "host:h1" {
				t.Fatalf("started by %q", lastOf(evs, events.EnvStarted).Principal)
			}
		})
	}
	if got := len(fm.running()); got != 2 {
		t.Fatalf("%d VMs running, want 2", got)
	}
}

func TestBootFailureAppendsFailed(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	fm.bootErr = context.DeadlineExceeded
	a, _ := runAgent(t, c, testConfig(t, "h1"), fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{})
	waitState(t, c, "h1", env, events.StateFailed, 10*time.Second)
	var r events.Reason
	if err := lastOf(history(t, c, "h1", env), events.EnvFailed).DecodeData(&r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Reason, "boot python VM") {
		t.Fatalf("reason %q", r.Reason)
	}
	if used, n := a.Usage(); n != 0 || used.MemoryMiB != 0 {
		t.Fatalf("reservation leaked: %+v, %d", used, n)
	}
}

// TestDuplicatePlacedStartsOneVM delivers the same placed event twice (as at-least-once
// delivery may) while the first boot is in progress: one VM, one starting, one started.
func TestDuplicatePlacedStartsOneVM(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	fm.bootDelay = 300 * time.Millisecond
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{})
	placed := lastOf(history(t, c, "h1", env), events.EnvPlaced)
	// A second copy of the placed message, stored without expectations as a redelivery would
	// look to the consumer.
	for range 2 {
		if _, err := c.Log.JetStream().Publish(context.Background(), placed.Subject, placed.Raw, jetstream.WithMsgID(newEnvID())); err != nil {
			t.Fatal(err)
		}
	}
	runAgent(t, c, testConfig(t, "h1"), fm)
	// The copies are illegal in the aggregate's history, so fold as the agent does (skipping them).
	g := aggregate{host: "h1", env: env}
	waitFor(t, 10*time.Second, "running", func() bool {
		return g.load(context.Background(), c.Log) == nil && g.State == events.StateRunning
	})
	time.Sleep(500 * time.Millisecond) // let the duplicates be handled
	evs := history(t, c, "h1", env)
	if n := countType(evs, events.EnvStarting); n != 1 {
		t.Errorf("%d starting events, want 1", n)
	}
	if n := countType(evs, events.EnvStarted); n != 1 {
		t.Errorf("%d started events, want 1", n)
	}
	if n := fm.launches.Load(); n != 1 {
		t.Errorf("%d launches, want 1", n)
	}
}

func TestDestroyRequested(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	a, _ := runAgent(t, c, testConfig(t, "h1"), fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvDestroyRequested, events.DestroyRequested{By: "tenant-1", Reason: events.ReasonUser}))
	waitState(t, c, "h1", env, events.StateDestroyed, 10*time.Second)
	if vms := fm.running(); len(vms) != 0 {
		t.Fatalf("VMs left: %v", vms)
	}
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "1"}, nil); e == nil || e.Code != hostrpc.CodeNotRunning {
		t.Fatalf("exec on destroyed env: %+v", e)
	}
	waitFor(t, 5*time.Second, "capacity released", func() bool { _, n := a.Usage(); return n == 0 })
}

// TestTTLDestroysIdleEnvironment runs no router and no projector: the agent alone notices
// the idle environment, requests its destruction (reason ttl) and destroys it.
func TestTTLDestroysIdleEnvironment(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	runAgent(t, c, testConfig(t, "h1"), fm)
	idle, busy := newEnvID(), newEnvID()
	place(t, c, "h1", idle, events.Requested{TTLSeconds: 1})
	place(t, c, "h1", busy, events.Requested{TTLSeconds: 1})
	waitState(t, c, "h1", busy, events.StateRunning, 10*time.Second)
	stopBusy := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keep busy active through RPC calls
		defer wg.Done()
		for {
			select {
			case <-stopBusy:
				return
			case <-time.After(200 * time.Millisecond):
				_ = call(t, c.NC, "h1", hostrpc.OpListFiles, hostrpc.ListFilesRequest{Env: busy}, nil) // counts as activity, answered or not
			}
		}
	}()
	start := time.Now()
	waitState(t, c, "h1", idle, events.StateDestroyed, 10*time.Second)
	t.Logf("idle environment destroyed %s after its placement (ttl 1s)", time.Since(start).Round(time.Millisecond))
	close(stopBusy)
	wg.Wait()
	evs := history(t, c, "h1", idle)
	var dr events.DestroyRequested
	if err := lastOf(evs, events.EnvDestroyRequested).DecodeData(&dr); err != nil {
		t.Fatal(err)
	}
	if dr.Reason != events.ReasonTTL || dr.By != "host:h1" {
		t.Fatalf("destroy_requested %+v", dr)
	}
	if got := state(t, c, "h1", busy); got != events.StateRunning {
		t.Fatalf("busy environment is %s", got)
	}
	if vms := fm.running(); len(vms) != 1 || vms[0] != busy {
		t.Fatalf("running VMs %v, want [%s]", vms, busy)
	}
	if n := countType(history(t, c, "h1", busy), events.EnvTouched); n < 1 || n > 10 {
		t.Fatalf("%d touched events for ~%d calls in %s: want coalesced", n, int(time.Since(start)/(200*time.Millisecond)), time.Since(start))
	}
}

// TestReconcile starts an agent on a host with leftovers: a VM of a running environment
// (adopted, no new boot), a VM the log does not know (killed), a running environment whose VM
// is gone (lost), and a placed one not handled yet (started by the consumer).
func TestReconcile(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	adopted, gone, pending, dead := newEnvID(), newEnvID(), newEnvID(), newEnvID()
	for _, env := range []string{adopted, gone, dead} {
		place(t, c, "h1", env, events.Requested{})
		appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvStarting, nil), mustEvent(t, "h1", env, events.EnvStarted, events.Started{}))
	}
	appendEnv(t, c, "h1", dead, mustEvent(t, "h1", dead, events.EnvLost, events.Reason{Reason: "earlier"}))
	place(t, c, "h1", pending, events.Requested{})
	fm.add(adopted, "python")
	fm.add("unknown-vm", "python")
	fm.add(dead, "python") // lost earlier (its host was declared failed): must not come back

	runAgent(t, c, testConfig(t, "h1"), fm)
	waitState(t, c, "h1", gone, events.StateLost, 10*time.Second)
	waitState(t, c, "h1", pending, events.StateRunning, 10*time.Second)
	if got := state(t, c, "h1", adopted); got != events.StateRunning {
		t.Fatalf("adopted environment is %s", got)
	}
	if got := state(t, c, "h1", dead); got != events.StateLost {
		t.Fatalf("lost environment is %s", got)
	}
	if vms, want := fm.running(), sortedIDs(adopted, pending); strings.Join(vms, ",") != strings.Join(want, ",") {
		t.Fatalf("running VMs %v, want %v", vms, want)
	}
	if n := fm.launches.Load(); n != 1 {
		t.Fatalf("%d launches, want 1 (only the pending environment)", n)
	}
	var res hostrpc.ExecResult
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: adopted, Code: "print(1)"}, &res); e != nil {
		t.Fatalf("exec on adopted environment: %+v", e)
	}
	if res.Stdout != "print(1)" {
		t.Fatalf("stdout %q", res.Stdout)
	}
}

func sortedIDs(ids ...string) []string {
	out := append([]string(nil), ids...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestCleanStopDrains stops an agent: its environments are destroyed (reason host_left), and
// host.left follows host.joined.
func TestCleanStopDrains(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	_, stop := runAgent(t, c, testConfig(t, "h1"), fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	stop()
	if got := state(t, c, "h1", env); got != events.StateDestroyed {
		t.Fatalf("state %s after drain", got)
	}
	var dr events.DestroyRequested
	if err := lastOf(history(t, c, "h1", env), events.EnvDestroyRequested).DecodeData(&dr); err != nil || dr.Reason != events.ReasonHostLeft {
		t.Fatalf("destroy_requested %+v, %v", dr, err)
	}
	hevs, _, err := c.Log.Load(context.Background(), events.HostAggregate("h1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(hevs) != 2 || hevs[0].Type != events.HostJoined || hevs[1].Type != events.HostLeft {
		t.Fatalf("host events %v", types(hevs))
	}
	if vms := fm.running(); len(vms) != 0 {
		t.Fatalf("VMs left: %v", vms)
	}
}

// TestDrainKeepLeavesVMsForAdoption stops with drain=keep and starts again: the VM is adopted.
func TestDrainKeepLeavesVMsForAdoption(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.Drain = DrainKeep
	_, stop := runAgent(t, c, cfg, fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	stop()
	if vms := fm.running(); len(vms) != 1 {
		t.Fatalf("VMs after keep-drain: %v", vms)
	}
	runAgent(t, c, cfg, fm)
	if e := call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "x"}, nil); e != nil {
		t.Fatalf("exec after restart: %+v", e)
	}
	if n := fm.launches.Load(); n != 1 {
		t.Fatalf("%d launches, want 1", n)
	}
}

func types(evs []*events.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// TestStopWithQueuedBoots stops an agent while placements wait for a boot slot: the boot in
// progress completes and is drained, the queued ones fail at once instead of delaying the stop.
func TestStopWithQueuedBoots(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	fm.bootDelay = 500 * time.Millisecond
	cfg := testConfig(t, "h1")
	cfg.MaxConcurrentBoots = 1
	_, stop := runAgent(t, c, cfg, fm)
	envs := []string{newEnvID(), newEnvID(), newEnvID()}
	for _, env := range envs {
		place(t, c, "h1", env, events.Requested{})
	}
	waitFor(t, 5*time.Second, "all starting", func() bool {
		for _, env := range envs {
			if state(t, c, "h1", env) != events.StateStarting {
				return false
			}
		}
		return true
	})
	begin := time.Now()
	stop()
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("stop took %s", d)
	}
	counts := map[string]int{}
	for _, env := range envs {
		counts[state(t, c, "h1", env)]++
	}
	if counts[events.StateDestroyed] != 1 || counts[events.StateFailed] != 2 {
		t.Fatalf("states after stop: %v", counts)
	}
	if vms := fm.running(); len(vms) != 0 {
		t.Fatalf("VMs left: %v", vms)
	}
}
