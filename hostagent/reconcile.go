// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"fmt"
	"time"

	"github.com/waggle-dev/waggle/events"
)

// reconcile makes the VMs of this host agree with the log before the agent serves anything:
// VMs of environments live on this host are adopted (a boot cut short by a crash is reported
// started; a destroy cut short is finished), every other VM is killed, and live environments
// whose VM is gone become lost (or destroyed, if a destroy was already requested).
func (a *Agent) reconcile(ctx context.Context) error {
	aggs, err := foldHost(ctx, a.log, a.cfg.HostID)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	vms, err := a.machines.Scan(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: scan VMs: %w", err)
	}
	claims, err := a.pool.claims()
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	adopted := map[string]bool{}
	for _, m := range vms {
		env, claimed := claims[m.ID()]
		if !claimed {
			env = m.ID()
		}
		g := aggs[env]
		live := g != nil && m.IsAlive() && (g.State == events.StateStarting || g.State == events.StateRunning || g.State == events.StateDestroying)
		if live {
			// Renewed before anything else: a VM whose lease ran out meanwhile is stopping.
			if err := m.Renew(ctx, a.leaseFor(a.ttl(g.Env))); err != nil {
				a.logger.Info("reconcile: VM lease could not be renewed", "vm", m.ID(), "env", env, "err", err)
				live = false
			}
		}
		if !live {
			a.logger.Info("reconcile: killing VM the log does not hold live here", "vm", m.ID(), "env", env)
			a.stopQuietly(ctx, m)
			if claimed {
				a.pool.unclaim(env)
			}
			continue
		}
		adopted[env] = true
		if err := a.adopt(ctx, g, m); err != nil {
			return fmt.Errorf("reconcile: adopt %s: %w", env, err)
		}
	}
	for env := range claims {
		if !adopted[claims[env]] {
			a.pool.unclaim(claims[env])
		}
	}
	for env, g := range aggs {
		if adopted[env] {
			continue
		}
		typ, data := events.EnvLost, any(events.Reason{Reason: "VM not found when the host agent started"})
		switch g.State {
		case events.StateStarting, events.StateRunning:
		case events.StateDestroying:
			typ, data = events.EnvDestroyed, nil
		default:
			continue // placed ones come through the consumer; the rest are over
		}
		if _, err := g.appendEvent(ctx, a.log, typ, a.principal, "", data); err != nil {
			return fmt.Errorf("reconcile: %s %s: %w", typ, env, err)
		}
		a.logger.Warn("reconcile: live environment without a VM", "env", env, "state", g.State, "appended", typ)
	}
	return nil
}

// adopt takes over a running VM of a live environment, without a new boot.
func (a *Agent) adopt(ctx context.Context, g *aggregate, m Machine) error {
	e := a.lockEntry(g.env)
	defer a.unlockEntry(e)
	e.agg = *g
	res := a.resources(g.Env)
	a.mu.Lock()
	a.addLocked(res, 1)
	e.res, e.reserved = res, true
	a.mu.Unlock()
	a.setMachine(e, m)
	active := g.LastActive
	if active.IsZero() {
		active = time.Now()
	}
	a.markActive(e, active, false)
	a.logger.Info("reconcile: adopted running VM", "env", g.env, "vm", m.ID(), "state", g.State)
	return a.settle(ctx, e, "", events.Started{})
}
