// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/membership"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// leaveTimeout bounds the graceful membership leave of a clean stop.
const leaveTimeout = 2 * time.Second

// Run reconciles the host's VMs with the log, announces host.joined, joins membership, serves
// placements and RPC, and enforces TTLs until ctx ends. It then stops admitting, drains the
// environments per Config.Drain, announces host.left and returns nil after a clean stop.
// Run may be called once per Agent.
func (a *Agent) Run(ctx context.Context) error {
	// Work continues during the drain after ctx ends; work is cancelled only when Run returns.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	defer a.tasks.Wait()

	// Startup: each step that succeeded is undone if a later one fails.
	var undo []func()
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return fmt.Errorf("hostagent %s: %w", a.cfg.HostID, err)
	}
	// The package proxy first: VMs adopted below may use it at once.
	stopPackages, err := a.servePackages()
	if err != nil {
		return fail(err)
	}
	defer stopPackages()
	if err := a.reconcile(work); err != nil {
		return fail(err)
	}
	mcfg := a.cfg.Membership
	mcfg.Name = a.cfg.HostID
	mcfg.Logger = a.logger
	mcfg.Meta = a.meta(0)
	members, err := membership.Start(mcfg)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = members.Shutdown() })
	a.mu.Lock()
	a.members = members
	a.mu.Unlock()
	svc, err := a.startRPC(work)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = svc.Stop() })
	cc, err := a.startConsumer(work)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, cc.Stop)
	// host.joined says the host serves: it comes once placements and calls are taken.
	if err := a.join(work); err != nil {
		return fail(err)
	}
	a.goTask(func() { a.runFailures(work, members.Departed()) })
	poolCtx, stopPool := context.WithCancel(work)
	poolDone := make(chan struct{})
	go func() { defer close(poolDone); a.pool.run(poolCtx) }()
	activityCtx, stopActivity := context.WithCancel(work)
	a.goTask(func() { a.runActivity(activityCtx) })
	close(a.ready)
	a.logger.Info("host agent running", "gossip", members.Addr(), "join_seq", a.currentJoin(),
		"capacity", a.cfg.Capacity, "warm_pool", a.cfg.WarmPool)

	<-ctx.Done()
	a.logger.Info("host agent stopping", "drain", a.cfg.Drain)
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
	close(a.stopping)
	cc.Stop()
	a.handlers.Wait()
	stopPool()
	<-poolDone
	var errs []error
	if err := svc.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stop rpc service: %w", err))
	}
	stopActivity()
	a.flushTouches(work)
	if a.cfg.Drain == DrainDestroy {
		errs = append(errs, a.drainAll(work))
	}
	if _, err := a.announce(work, events.HostLeft); err != nil {
		errs = append(errs, err)
	}
	if err := members.Leave(leaveTimeout); err != nil {
		errs = append(errs, err)
	}
	cancelWork()
	a.tasks.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hostagent %s: stop: %w", a.cfg.HostID, err)
	}
	a.logger.Info("host agent stopped")
	return nil
}

// servePackages serves the package proxy on Config.PackageSocket until the returned stop is
// called; without a proxy it does nothing.
func (a *Agent) servePackages() (stop func(), err error) {
	if a.packages == nil {
		return func() {}, nil
	}
	ln, err := pkgproxy.Listen(a.cfg.PackageSocket)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.packages.Serve(ctx, ln); err != nil {
			a.logger.Error("package proxy stopped", "err", err)
		}
	}()
	a.logger.Info("package proxy serving", "socket", a.cfg.PackageSocket, "pypi", a.cfg.Packages.PyPIIndex,
		"npm", a.cfg.Packages.NpmRegistry, "apt", a.cfg.Packages.AptMirror)
	return func() {
		cancel()
		<-done
		a.packages.Close()
	}, nil
}

// Ready is closed once Run serves: reconciled, joined, consuming placements and serving RPC.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Members are the live members of the cluster as this agent sees them (nil before Run).
func (a *Agent) Members() []membership.Member {
	a.mu.Lock()
	m := a.members
	a.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.Members()
}

// GossipAddr is the address this agent's membership listens on ("" before Run).
func (a *Agent) GossipAddr() string {
	a.mu.Lock()
	m := a.members
	a.mu.Unlock()
	if m == nil {
		return ""
	}
	return m.Addr()
}

// meta is the membership metadata of this host's incarnation that joined at joinSeq.
func (a *Agent) meta(joinSeq uint64) membership.Meta {
	return membership.Meta{CPUs: a.cfg.Capacity.CPUs, MemoryMiB: a.cfg.Capacity.MemoryMiB,
		MaxEnvironments: a.cfg.Capacity.MaxEnvironments, Address: a.GossipAddr(), JoinSeq: joinSeq}
}

// join announces host.joined, a new incarnation of this host, and tells membership its
// sequence (peers report the failure of that incarnation, no other).
func (a *Agent) join(ctx context.Context) error {
	seq, err := a.announce(ctx, events.HostJoined)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.joinSeq = seq
	members := a.members
	a.mu.Unlock()
	return members.SetMeta(a.meta(seq))
}

// currentJoin is the sequence of this incarnation's host.joined (0 before it joined).
func (a *Agent) currentJoin() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.joinSeq
}

// announce appends a host lifecycle event and returns its stream sequence.
func (a *Agent) announce(ctx context.Context, typ string) (uint64, error) {
	var data any
	if typ == events.HostJoined {
		data = events.HostInfo{Address: a.GossipAddr(), CPUs: a.cfg.Capacity.CPUs,
			MemoryMiB: a.cfg.Capacity.MemoryMiB, MaxEnvironments: a.cfg.Capacity.MaxEnvironments}
	}
	for range maxAppendAttempts {
		head, err := a.log.Head(ctx, events.HostAggregate(a.cfg.HostID))
		if err != nil {
			return 0, fmt.Errorf("announce %s: %w", typ, err)
		}
		ev, err := events.NewHostEvent(a.cfg.HostID, typ, a.principal, data)
		if err != nil {
			return 0, err
		}
		head, err = a.log.Append(ctx, ev, head)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("announce %s: %w", typ, err)
		}
		return head.Seq, nil
	}
	return 0, fmt.Errorf("announce %s: still conflicting after %d attempts", typ, maxAppendAttempts)
}

// envsWithVM lists the environments of this host that hold a VM.
func (a *Agent) envsWithVM() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for id, e := range a.envs {
		if e.machine != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// drainAll destroys every environment of this host (reason host_left).
func (a *Agent) drainAll(ctx context.Context) error {
	var errs []error
	for _, id := range a.envsWithVM() {
		e := a.lockEntry(id)
		ok, err := e.agg.appendEvent(ctx, a.log, events.EnvDestroyRequested, a.principal, "",
			events.DestroyRequested{By: a.principal, Reason: events.ReasonHostLeft})
		if err == nil && (ok || e.agg.State == events.StateDestroying) {
			err = a.finishDestroy(ctx, e, "")
		}
		a.unlockEntry(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("drain %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
