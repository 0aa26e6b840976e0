// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"errors"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
)

func TestLeaseFor(t *testing.T) {
	a := &Agent{cfg: DefaultConfig()} // renews every 15 s
	for _, tc := range []struct{ ttl, want time.Duration }{
		{30 * time.Minute, 30 * time.Minute},
		{time.Minute, time.Minute},
		{10 * time.Second, time.Minute},  // at least four renewals
		{48 * time.Hour, 24 * time.Hour}, // the VM layer's longest
	} {
		if got := a.leaseFor(tc.ttl); got != tc.want {
			t.Errorf("leaseFor(%s) = %s, want %s", tc.ttl, got, tc.want)
		}
	}
}

// TestLeasesRenewed: every VM the agent holds, an environment's and the pool's, is launched
// with a lease of about its idle timeout and renewed while the agent runs.
func TestLeasesRenewed(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.RenewInterval = 20 * time.Millisecond
	cfg.WarmPool, cfg.WarmRuntimes = 1, []string{"shell"}
	runAgent(t, c, cfg, fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python", TTLSeconds: 600})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	waitFor(t, 10*time.Second, "both VMs renewed", func() bool {
		if len(fm.running()) != 2 {
			return false
		}
		for _, id := range fm.running() {
			if _, n := fm.vm(id).leased(); n < 3 {
				return false
			}
		}
		return true
	})
	for _, id := range fm.running() {
		want := cfg.DefaultTTL // the pool's VM
		if id == env {
			want = 10 * time.Minute
		}
		if lease, _ := fm.vm(id).leased(); lease != want {
			t.Errorf("VM %s has a lease of %s, want %s", id, lease, want)
		}
	}
}

// TestReconcileRefusesExpiredLease: a restarted agent does not adopt a VM whose lease ran out
// (it is stopping by itself); it kills what is left and the environment is lost.
func TestReconcileRefusesExpiredLease(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	kept, expired := newEnvID(), newEnvID()
	for _, env := range []string{kept, expired} {
		place(t, c, "h1", env, events.Requested{})
		appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvStarting, nil), mustEvent(t, "h1", env, events.EnvStarted, events.Started{}))
		fm.add(env, "python")
	}
	fm.vm(expired).renewErr = errors.New("shim renew: lease expired: the VM is stopping")
	runAgent(t, c, testConfig(t, "h1"), fm)
	waitState(t, c, "h1", expired, events.StateLost, 10*time.Second)
	if got := state(t, c, "h1", kept); got != events.StateRunning {
		t.Fatalf("the VM whose lease runs is %s, want it adopted", got)
	}
	if vms := fm.running(); len(vms) != 1 || vms[0] != kept {
		t.Fatalf("running VMs %v, want only %s", vms, kept)
	}
	if _, n := fm.vm(kept).leased(); n == 0 {
		t.Error("the adopted VM's lease was not renewed at adoption")
	}
}
