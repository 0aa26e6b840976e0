// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/hostagent/membership"
)

// TestHostFailedDeduplicated runs three agents that all detect the crash of a fourth member:
// exactly one host.failed is appended, and one lost per live environment of the dead host.
func TestHostFailedDeduplicated(t *testing.T) {
	c := eventstest.Start(t)
	ctx := context.Background()

	// The victim: a member whose host joined the log and holds two live environments.
	joined, err := events.NewHostEvent("victim", events.HostJoined, "host:victim", events.HostInfo{CPUs: 1, MemoryMiB: 512, MaxEnvironments: 2})
	if err != nil {
		t.Fatal(err)
	}
	head, err := c.Log.Append(ctx, joined, events.Head{})
	if err != nil {
		t.Fatal(err)
	}
	running, starting, gone := newEnvID(), newEnvID(), newEnvID()
	for _, env := range []string{running, starting, gone} {
		place(t, c, "victim", env, events.Requested{})
	}
	appendEnv(t, c, "victim", running, mustEvent(t, "victim", running, events.EnvStarting, nil), mustEvent(t, "victim", running, events.EnvStarted, events.Started{}))
	appendEnv(t, c, "victim", starting, mustEvent(t, "victim", starting, events.EnvStarting, nil))
	appendEnv(t, c, "victim", gone, mustEvent(t, "victim", gone, events.EnvRejected, events.Reason{Reason: "full"}))

	mcfg := membership.DefaultConfig()
	mcfg.Name = "victim"
	mcfg.Logger = testLogger()
	mcfg.Meta = membership.Meta{JoinSeq: head.Seq}
	victim, err := membership.Start(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Shutdown() })

	var agents []*Agent
	for _, h := range []string{"h1", "h2", "h3"} {
		cfg := testConfig(t, h)
		cfg.Membership.Join = []string{victim.Addr()}
		a, _ := runAgent(t, c, cfg, newFakeMachines())
		agents = append(agents, a)
	}
	waitFor(t, 10*time.Second, "4 members", func() bool {
		for _, a := range agents {
			if len(a.Members()) != 4 {
				return false
			}
		}
		return true
	})

	crash := time.Now()
	if err := victim.Shutdown(); err != nil { // no leave: a crash as the others see it
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "host.failed", func() bool {
		evs, _, err := c.Log.Load(ctx, events.HostAggregate("victim"))
		return err == nil && evs[len(evs)-1].Type == events.HostFailed
	})
	detected := time.Since(crash)
	waitState(t, c, "victim", running, events.StateLost, 10*time.Second)
	waitState(t, c, "victim", starting, events.StateLost, 10*time.Second)
	t.Logf("crash -> host.failed %s, -> lost %s", detected.Round(time.Millisecond), time.Since(crash).Round(time.Millisecond))

	// Every detector reports again, concurrently: still one failure event.
	var wg sync.WaitGroup
	for _, a := range agents {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := a.hostFailed(ctx, "victim", head.Seq); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	hevs, _, err := c.Log.Load(ctx, events.HostAggregate("victim"))
	if err != nil {
		t.Fatal(err)
	}
	if n := countType(hevs, events.HostFailed); n != 1 {
		t.Fatalf("%d host.failed events, want 1: %v", n, types(hevs))
	}
	for _, env := range []string{running, starting} {
		if n := countType(history(t, c, "victim", env), events.EnvLost); n != 1 {
			t.Fatalf("%s: %d lost events", env, n)
		}
	}
	if got := state(t, c, "victim", gone); got != events.StateRejected {
		t.Fatalf("rejected environment became %s", got)
	}

	// The host rejoins (a new incarnation): a late report of the old one changes nothing.
	rejoined, err := events.NewHostEvent("victim", events.HostJoined, "host:victim", events.HostInfo{})
	if err != nil {
		t.Fatal(err)
	}
	last := hevs[len(hevs)-1]
	if _, err := c.Log.Append(ctx, rejoined, events.Head{Seq: last.Seq, Hash: events.Hash(last.Raw)}); err != nil {
		t.Fatal(err)
	}
	if err := agents[0].hostFailed(ctx, "victim", head.Seq); err != nil {
		t.Fatal(err)
	}
	hevs, _, _ = c.Log.Load(ctx, events.HostAggregate("victim"))
	if last := hevs[len(hevs)-1].Type; last != events.HostJoined {
		t.Fatalf("stale failure report appended %s", last)
	}
}

// TestPeerAnsweringOverNATSNotFailed: a peer that gossip reports dead but that answers a ping
// over NATS (only the gossip between the two is cut, or the detector was cut off and is back)
// is not declared failed, and its environments stay as they are.
func TestPeerAnsweringOverNATSNotFailed(t *testing.T) {
	c := eventstest.Start(t)
	ctx := context.Background()
	peer, _ := runAgent(t, c, testConfig(t, "h1"), newFakeMachines())
	detector, _ := runAgent(t, c, testConfig(t, "h2"), newFakeMachines())
	env := startEnv(t, c, "h1")
	if err := detector.hostFailed(ctx, "h1", peer.currentJoin()); !errors.Is(err, ErrNotFailed) {
		t.Fatalf("hostFailed of a peer that answers: %v, want ErrNotFailed", err)
	}
	hevs, _, err := c.Log.Load(ctx, events.HostAggregate("h1"))
	if err != nil {
		t.Fatal(err)
	}
	if n := countType(hevs, events.HostFailed); n != 0 {
		t.Fatalf("%d host.failed events for a host that answers: %v", n, types(hevs))
	}
	if got := state(t, c, "h1", env); got != events.StateRunning {
		t.Fatalf("environment of the host that answers is %s, want running", got)
	}
}
