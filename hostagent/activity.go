// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
)

// markActive records activity on e; call counts it as an RPC call for the next touched event.
func (a *Agent) markActive(e *envEntry, t time.Time, call bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.After(e.active) {
		e.active = t
	}
	if call {
		e.calls++
	}
}

// ttl is e's idle timeout.
func (a *Agent) ttl(env events.Env) time.Duration {
	if env.TTLSeconds > 0 {
		return env.TTL()
	}
	return a.cfg.DefaultTTL
}

// runActivity appends the coalesced touched events every TouchInterval and stops environments
// idle past their TTL, until ctx ends. It needs no router or projector.
func (a *Agent) runActivity(ctx context.Context) {
	touch := time.NewTicker(a.cfg.TouchInterval)
	defer touch.Stop()
	check := time.NewTicker(a.cfg.TTLCheckInterval)
	defer check.Stop()
	renew := time.NewTicker(a.cfg.RenewInterval)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-touch.C:
			a.flushTouches(ctx)
		case <-check.C:
			a.expireIdle(ctx)
		case <-renew.C:
			a.renewLeases(ctx)
		}
	}
}

// leaseFor is the lease of a VM whose environment idles out after ttl: about ttl, and at least
// four renew intervals, so that one late renew never loses a VM.
func (a *Agent) leaseFor(ttl time.Duration) time.Duration {
	return min(max(ttl, 4*a.cfg.RenewInterval), shim.MaxLease)
}

// renewLeases renews the lease of every VM this agent holds, the environments' and the pool's,
// so that they run while it lives.
func (a *Agent) renewLeases(ctx context.Context) {
	type held struct {
		env   string
		m     Machine
		lease time.Duration
	}
	var vms []held
	a.mu.Lock()
	for id, e := range a.envs {
		if e.machine != nil {
			vms = append(vms, held{id, e.machine, a.leaseFor(e.ttl)})
		}
	}
	for _, list := range a.pool.ready {
		for _, m := range list {
			vms = append(vms, held{"", m, a.leaseFor(a.cfg.DefaultTTL)})
		}
	}
	a.mu.Unlock()
	for _, h := range vms {
		rctx, cancel := context.WithTimeout(ctx, a.cfg.RenewInterval)
		err := h.m.Renew(rctx, h.lease)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("renew VM lease", "vm", h.m.ID(), "env", h.env, "err", err)
		}
	}
}

// flushTouches appends one touched event per environment that had calls since the last one.
func (a *Agent) flushTouches(ctx context.Context) {
	type touch struct {
		env   string
		calls int
		at    time.Time
	}
	var due []touch
	a.mu.Lock()
	for id, e := range a.envs {
		if e.calls > 0 {
			due = append(due, touch{id, e.calls, e.active})
			e.calls = 0
		}
	}
	a.mu.Unlock()
	for _, t := range due {
		e := a.lockEntry(t.env)
		_, err := e.agg.appendEvent(ctx, a.log, events.EnvTouched, a.principal, "",
			events.Touched{LastActive: t.at.UTC(), Calls: t.calls})
		a.unlockEntry(e)
		if err != nil {
			a.logger.Warn("touched", "env", t.env, "err", err)
		}
	}
}

// expireIdle destroys (or, as its on_timeout asks, pauses) every running environment idle past
// its TTL.
func (a *Agent) expireIdle(ctx context.Context) {
	now := time.Now()
	var idle []string
	a.mu.Lock()
	for id, e := range a.envs {
		if e.machine != nil && !e.active.IsZero() && now.Sub(e.active) > e.ttl {
			idle = append(idle, id)
		}
	}
	a.mu.Unlock()
	for _, env := range idle {
		if a.procs.busy(env) { // a running background process is activity
			continue
		}
		if err := a.expire(ctx, env, now); err != nil {
			a.logger.Warn("ttl: destroy failed, will retry", "env", env, "err", err)
		}
	}
}

// expire appends destroy_requested (reason ttl) and destroys env, if it is still running and
// still idle.
func (a *Agent) expire(ctx context.Context, env string, now time.Time) error {
	e := a.lockEntry(env)
	defer a.unlockEntry(e)
	a.mu.Lock()
	idle := e.machine != nil && now.Sub(e.active) > e.ttl
	idleSince := e.active
	a.mu.Unlock()
	if !idle {
		return nil
	}
	if e.agg.OnTimeout == events.OnTimeoutPause {
		if _, err := a.pauseLocked(ctx, e, a.principal, "", pausedByTTL); err != nil {
			return err
		}
		a.logger.Info("ttl: environment idle past its timeout, paused", "env", env, "ttl", a.ttl(e.agg.Env), "idle_since", idleSince)
		return nil
	}
	ok, err := e.agg.appendEvent(ctx, a.log, events.EnvDestroyRequested, a.principal, "",
		events.DestroyRequested{By: a.principal, Reason: events.ReasonTTL})
	if err != nil {
		return err
	}
	if !ok && e.agg.State != events.StateDestroying {
		return nil
	}
	a.logger.Info("ttl: environment idle past its timeout", "env", env, "ttl", a.ttl(e.agg.Env), "idle_since", idleSince)
	return a.finishDestroy(ctx, e, "")
}
