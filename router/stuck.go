// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/waggle-dev/waggle/events"
)

// Environments stuck half-way. A router that dies (or whose caller goes away) between
// requested and placed, or a host that never takes a placement, leaves an environment in
// requested or placed, counted against its tenant for ever. Every router sweeps for them: one
// whose last event is older than Config.StuckAfter in one of those states is ended, with
// destroy_requested (reason stuck) when its host is live, so that the host finishes it
// (destroyed, with or without a VM), or with lost when its host is gone (failed, left, or
// never joined), since nobody else would end it then. Replicas sweep at the same time: the
// event they append has an id derived from the environment, the event type and the head it
// follows (events.DerivedID), and expects that head, so it is stored once, whoever wins.

// reasonStuck is the destroy reason of an environment that stayed requested or placed too long.
const reasonStuck = "stuck"

// runSweeper ends stuck environments every SweepInterval until ctx ends.
func (r *Router) runSweeper(ctx context.Context) {
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.endStuck(ctx, time.Now()); err != nil && ctx.Err() == nil {
				r.logger.Warn("sweep for stuck environments", "err", err)
			}
		}
	}
}

// endStuck ends every environment that the view shows requested or placed since before
// now - StuckAfter and that the log says is still stuck.
func (r *Router) endStuck(ctx context.Context, now time.Time) error {
	envs, err := r.view.Envs(ctx)
	if err != nil {
		return fmt.Errorf("read environments: %w", err)
	}
	var errs []error
	for _, e := range envs {
		if !stuckState(e.State) || now.Sub(e.Created) < r.cfg.StuckAfter {
			continue
		}
		if err := r.endIfStuck(ctx, e.Host, e.ID, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func stuckState(state string) bool {
	return state == events.StateRequested || state == events.StatePlaced
}

// endIfStuck re-reads env from the log (the view may lag) and ends it if its last event is a
// requested or placed older than StuckAfter.
func (r *Router) endIfStuck(ctx context.Context, host, env string, now time.Time) error {
	evs, head, err := r.log.Load(ctx, events.EnvAggregate(host, env))
	if err != nil {
		return fmt.Errorf("load environment %s: %w", env, err)
	}
	if len(evs) == 0 {
		return nil
	}
	e, err := events.FoldEnv(evs)
	if err != nil {
		return err
	}
	last := evs[len(evs)-1]
	stuckFor := now.Sub(eventTime(last))
	if !stuckState(e.State) || stuckFor < r.cfg.StuckAfter {
		return nil
	}
	gone, err := r.hostGone(ctx, host)
	if err != nil {
		return err
	}
	principal := "router:" + r.cfg.ID
	typ, data := events.EnvDestroyRequested, any(events.DestroyRequested{By: principal, Reason: reasonStuck})
	if gone != "" {
		typ, data = events.EnvLost, events.Reason{Reason: fmt.Sprintf("environment stayed %s for %s and its host %s %s",
			e.State, stuckFor.Round(time.Second), host, gone)}
	}
	ev, err := events.NewEnvEvent(host, env, typ, principal, data)
	if err != nil {
		return err
	}
	ev.ID = events.DerivedID(last.Time, reasonStuck, env, typ, strconv.FormatUint(head.Seq, 10))
	ev.Causation, ev.Correlation = last.ID, last.Correlation
	if _, err := r.log.Append(ctx, ev, head); errors.Is(err, events.ErrConflict) {
		return nil // it moved on meanwhile; the next sweep looks again
	} else if err != nil {
		return fmt.Errorf("end stuck environment %s: append %s: %w", env, typ, err)
	}
	r.logger.Warn("ended an environment stuck half-way", "env", env, "host", host, "state", e.State,
		"stuck_for", stuckFor.Round(time.Second), "appended", typ, "by", ev.Principal)
	if typ == events.EnvLost {
		r.unreserve(ctx, Principal{Tenant: e.Owner}, env)
	}
	return nil
}

// hostGone says how host is gone ("failed", "left", "never joined"), or "" while it is live
// (joined or drained: its agent still carries out destroy requests), as its own events say.
func (r *Router) hostGone(ctx context.Context, host string) (string, error) {
	evs, _, err := r.log.Load(ctx, events.HostAggregate(host))
	if err != nil {
		return "", fmt.Errorf("load host %s: %w", host, err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		switch evs[i].Type {
		case events.HostJoined, events.HostDrained:
			return "", nil
		case events.HostFailed:
			return "failed", nil
		case events.HostLeft:
			return "left", nil
		}
	}
	return "never joined", nil
}
