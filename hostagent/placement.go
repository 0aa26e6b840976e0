// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/waggle-dev/waggle/events"
)

// placementBatch bounds how many placements one host works on at once.
const placementBatch = 64

// startConsumer subscribes to the host's placements and destroy requests, and to what fences it
// (lost for its environments, host.failed for itself). Each message is handled in its own
// task; handling is idempotent per environment, so redeliveries are safe.
func (a *Agent) startConsumer(ctx context.Context) (jetstream.ConsumeContext, error) {
	h := a.cfg.HostID
	cons, err := a.log.JetStream().CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:     a.cfg.Consumer,
		Description: "placements of host " + h,
		FilterSubjects: []string{events.EnvSubject(h, "*", events.EnvPlaced), events.EnvSubject(h, "*", events.EnvDestroyRequested),
			events.EnvSubject(h, "*", events.EnvLost), events.HostSubject(h, events.HostFailed)},
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       a.cfg.AckWait,
		MaxAckPending: placementBatch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("placement consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		a.handlers.Add(1)
		go func() {
			defer a.handlers.Done()
			a.handleMsg(ctx, msg)
		}()
	}, jetstream.PullMaxMessages(placementBatch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		a.logger.Debug("placement consumer", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("placement consumer: consume: %w", err)
	}
	return cc, nil
}

// handleMsg handles one delivery and acks it; a failure to reach the log naks it for a retry.
func (a *Agent) handleMsg(ctx context.Context, msg jetstream.Msg) {
	ev, err := events.Decode(msg.Data())
	if err != nil {
		a.logger.Error("placement consumer: undecodable event, dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	stop := a.keepInProgress(msg)
	defer stop()
	switch {
	case ev.Env == "" && ev.Type == events.HostFailed:
		err = a.fenceHost(ctx, ev)
	case ev.Type == events.EnvPlaced:
		err = a.place(ctx, ev.Env, ev.Correlation)
	case ev.Type == events.EnvDestroyRequested:
		err = a.destroy(ctx, ev.Env, ev.Correlation)
	case ev.Type == events.EnvLost:
		err = a.fenceEnv(ctx, ev.Env)
	}
	if err != nil {
		a.logger.Warn("placement consumer: handling failed, will retry", "env", ev.Env, "type", ev.Type, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.Ack(); err != nil {
		a.logger.Debug("placement consumer: ack", "env", ev.Env, "err", err)
	}
}

// keepInProgress tells the server the message is still being worked on (a boot can outlast the
// ack wait when many run at once) until the returned stop is called.
func (a *Agent) keepInProgress(msg jetstream.Msg) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(a.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// place admits, boots and reports one placed environment. It boots nothing unless the
// environment is still in state placed, so a duplicate delivery never starts a second VM; a
// redelivery after an earlier one booted the VM but failed to report it (a lost ack) finishes
// that report instead.
func (a *Agent) place(ctx context.Context, env, correlation string) error {
	e := a.lockEntry(env)
	defer a.unlockEntry(e)
	if err := e.agg.load(ctx, a.log); err != nil {
		return err
	}
	if e.machine != nil {
		return a.settle(ctx, e, correlation, events.Started{})
	}
	if e.agg.State != events.StatePlaced {
		return nil // handled before (or moved on by someone else)
	}
	res := a.resources(e.agg.Env)
	warm, reason := a.admit(e, e.agg.Runtime, res, e.agg.ForkOf == "" && e.agg.ResumeOf == "")
	if reason != "" {
		a.metrics.placements.WithLabelValues(placeRejected).Inc()
		a.logger.Info("placement rejected", "env", env, "reason", reason)
		_, err := e.agg.appendEvent(ctx, a.log, events.EnvRejected, a.principal, correlation, events.Reason{Reason: reason})
		return err
	}
	ok, err := e.agg.appendEvent(ctx, a.log, events.EnvStarting, a.principal, correlation, nil)
	if err != nil || !ok {
		a.undoAdmit(ctx, e, warm)
		return err
	}
	start := time.Now()
	m := warm
	spec := LaunchSpec{ID: env, Runtime: e.agg.Runtime, Resources: res, Lease: a.leaseFor(a.ttl(e.agg.Env))}
	switch {
	case e.agg.ForkOf != "":
		m, err = a.fork(ctx, e.agg.ForkOf, spec)
	case e.agg.ResumeOf != "":
		m, err = a.resumeMoved(ctx, e.agg.ResumeOf, spec, e.agg.Owner)
	case m == nil:
		m, err = a.launch(ctx, spec)
	default:
		err = a.pool.claim(env, m)
	}
	if err != nil {
		if warm != nil {
			a.stopQuietly(ctx, warm)
		}
		a.setMachine(e, nil)
		a.metrics.placements.WithLabelValues(placeFailed).Inc()
		a.logger.Warn("boot failed", "env", env, "err", err)
		_, aerr := e.agg.appendEvent(ctx, a.log, events.EnvFailed, a.principal, correlation, events.Reason{Reason: err.Error()})
		return aerr
	}
	a.setMachine(e, m)
	a.markActive(e, time.Now(), false)
	return a.settle(ctx, e, correlation, events.Started{BootMillis: time.Since(start).Milliseconds(), Warm: warm != nil})
}

// settle brings an environment whose VM runs in line with its state: it reports a boot that
// is not reported yet (started), serves a running environment, finishes a destroy requested
// meanwhile and stops the VM of one that is over (lost, failed). When the started append fails
// the VM stays in the table and the error is returned: the placement's redelivery settles it
// again, whether that append was stored (its ack lost) or not. The caller holds e.mu.
func (a *Agent) settle(ctx context.Context, e *envEntry, correlation string, started events.Started) error {
	if e.agg.State == events.StateStarting {
		// Serve calls from the moment started is out: a router may see the event (and send a
		// call) before the append returns here. updateServing below corrects it if it failed.
		a.serveEarly(e)
		ok, err := e.agg.appendEvent(ctx, a.log, events.EnvStarted, a.principal, correlation, started)
		if err != nil {
			a.updateServing(e)
			return err
		}
		if ok {
			result := placeStartedCold
			if started.Warm {
				result = placeStartedWarm
			}
			a.metrics.placements.WithLabelValues(result).Inc()
			a.logger.Info("environment started", "env", e.id, "runtime", e.agg.Runtime, "warm", started.Warm,
				"boot_ms", started.BootMillis)
		}
	}
	a.updateServing(e)
	if e.agg.State == events.StateDestroying || events.Terminal(e.agg.State) {
		// Destroyed (or given up) while booting: finish what was asked.
		return a.finishDestroy(ctx, e, correlation)
	}
	return nil
}

// admit reserves capacity for an environment: a matching warm pool VM if there is one and
// pooled allows it (its reservation passes to the environment), else free capacity, evicting
// idle pool VMs to make room. It returns the pool VM (nil for a cold boot or a fork), or the
// reason for a rejection.
func (a *Agent) admit(e *envEntry, runtime string, res events.Resources, pooled bool) (Machine, string) {
	if pooled {
		if m := a.pool.take(e, runtime, res); m != nil {
			return m, ""
		}
	}
	reason := a.reserve(e, res)
	for reason != "" && a.pool.evictOne() {
		reason = a.reserve(e, res)
	}
	return nil, reason
}

// undoAdmit gives back what admit took when the environment did not get to starting.
func (a *Agent) undoAdmit(ctx context.Context, e *envEntry, warm Machine) {
	if warm != nil {
		a.stopQuietly(ctx, warm)
	}
	a.setMachine(e, nil)
}

// launch cold-boots a VM once a boot slot is free (placements queue in arrival order; the
// queue is bounded by the capacity they reserved), bounded by the boot timeout.
func (a *Agent) launch(ctx context.Context, spec LaunchSpec) (Machine, error) {
	a.metrics.bootsQueued.Inc()
	select {
	case a.boots <- struct{}{}:
		a.metrics.bootsQueued.Dec()
		defer func() { <-a.boots }()
	case <-a.stopping:
		a.metrics.bootsQueued.Dec()
		return nil, fmt.Errorf("boot %s VM: host %s is stopping", spec.Runtime, a.cfg.HostID)
	case <-ctx.Done():
		a.metrics.bootsQueued.Dec()
		return nil, fmt.Errorf("boot %s VM: waiting for a boot slot (%d in progress): %w", spec.Runtime, cap(a.boots), ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.BootTimeout)
	defer cancel()
	start := time.Now()
	m, err := a.machines.Launch(ctx, spec)
	a.metrics.booted(spec, start, err)
	if err != nil {
		return nil, fmt.Errorf("boot %s VM: %w", spec.Runtime, err)
	}
	return m, nil
}

// destroy handles a destroy request: stop the VM and append destroyed.
func (a *Agent) destroy(ctx context.Context, env, correlation string) error {
	e := a.lockEntry(env)
	defer a.unlockEntry(e)
	if err := e.agg.load(ctx, a.log); err != nil {
		return err
	}
	if e.agg.State != events.StateDestroying {
		return nil
	}
	return a.finishDestroy(ctx, e, correlation)
}

// finishDestroy stops e's VM (if any) and appends destroyed when the state allows it. The caller
// holds e.mu.
func (a *Agent) finishDestroy(ctx context.Context, e *envEntry, correlation string) error {
	a.mu.Lock()
	m := e.machine
	e.serving = false
	a.mu.Unlock()
	a.procs.drop(e.id)
	if m != nil {
		if err := a.stopMachine(ctx, m); err != nil {
			return err
		}
		a.setMachine(e, nil)
		a.pool.unclaim(e.id)
	}
	if e.agg.Snapshot != nil { // destroyed while paused
		if err := a.machines.DropPaused(ctx, e.id); err != nil {
			return fmt.Errorf("drop the snapshot of paused %s: %w", e.id, err)
		}
		if err := a.dropStored(ctx, e.id, e.agg.Snapshot); err != nil {
			return fmt.Errorf("drop the stored snapshot of paused %s: %w", e.id, err)
		}
	}
	if e.agg.State == events.StateDestroying {
		if _, err := e.agg.appendEvent(ctx, a.log, events.EnvDestroyed, a.principal, correlation, nil); err != nil {
			return err
		}
		a.logger.Info("environment destroyed", "env", e.id)
	}
	return nil
}

// stopQuietly stops a VM nobody records any more, logging a failure.
func (a *Agent) stopQuietly(ctx context.Context, m Machine) {
	if err := a.stopMachine(ctx, m); err != nil {
		a.logger.Error("stop VM", "vm", m.ID(), "err", err)
	}
}
