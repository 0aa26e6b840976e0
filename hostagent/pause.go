// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// Why an environment was paused (events.Paused.Reason).
const (
	pausedByCall = "call"
	pausedByTTL  = "idle timeout"
)

func (a *Agent) rpcPause(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.EnvRequest
	if err := decode(c, &req, func() string { return req.Env }, nil); err != nil {
		return nil, err
	}
	return a.pause(ctx, req.Env, c.principal, c.correlation, pausedByCall)
}

func (a *Agent) rpcResume(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.EnvRequest
	if err := decode(c, &req, func() string { return req.Env }, nil); err != nil {
		return nil, err
	}
	return a.resume(ctx, req.Env, c.principal, c.correlation, false)
}

// notHere is the error for a call on an environment that is not running or paused here.
func (a *Agent) notHere(env, state string) error {
	if state == events.StateNone {
		return rpcErrorf(hostrpc.CodeNotFound, "environment %s not found on host %s", env, a.cfg.HostID)
	}
	return rpcErrorf(hostrpc.CodeNotRunning, "environment %s is %s: only a running environment can be paused or resumed", env, state)
}

// pause saves a running environment's VM (memory, devices, disk) and stops it, giving back
// its capacity, and appends paused. Its processes are in the snapshot; the agent's records of
// processes started through process_start are dropped (their sessions end with the VM). A
// call in progress on the environment fails.
func (a *Agent) pause(ctx context.Context, env, principal, correlation, reason string) (hostrpc.PauseResult, error) {
	e := a.lockEntry(env)
	defer a.unlockEntry(e)
	return a.pauseLocked(ctx, e, principal, correlation, reason)
}

// pauseLocked is pause with e.mu held.
func (a *Agent) pauseLocked(ctx context.Context, e *envEntry, principal, correlation, reason string) (hostrpc.PauseResult, error) {
	env := e.id
	if err := e.agg.load(ctx, a.log); err != nil {
		return hostrpc.PauseResult{}, err
	}
	a.mu.Lock()
	m := e.machine
	a.mu.Unlock()
	switch {
	case e.agg.State == events.StatePaused && e.agg.Snapshot != nil:
		return hostrpc.PauseResult{AlreadyPaused: true, SnapshotBytes: e.agg.Snapshot.SnapshotBytes,
			Location: e.agg.Snapshot.Location, PauseMS: e.agg.Snapshot.PausedMillis}, nil
	case e.agg.State != events.StateRunning:
		return hostrpc.PauseResult{}, a.notHere(env, e.agg.State)
	case m == nil:
		return hostrpc.PauseResult{}, rpcErrorf(hostrpc.CodeNotRunning, "environment %s has no VM on host %s", env, a.cfg.HostID)
	}
	a.mu.Lock()
	e.serving = false
	a.mu.Unlock()
	a.procs.drop(env)
	p, err := a.machines.Pause(ctx, m)
	if err != nil {
		if m.IsAlive() {
			a.updateServing(e) // the save failed before the VM stopped: it goes on
		} else {
			a.setMachine(e, nil)
		}
		return hostrpc.PauseResult{}, fmt.Errorf("pause %s: %w", env, err)
	}
	a.setMachine(e, nil)
	a.pool.unclaim(env)
	if a.cfg.SnapshotStore == SnapshotStoreObjects {
		p.Location = a.storeSnapshot(ctx, env, p)
	}
	data := events.Paused{SnapshotBytes: p.Bytes, Location: p.Location, PausedMillis: p.Took.Milliseconds(), Reason: reason}
	if _, err := e.agg.appendEvent(ctx, a.log, events.EnvPaused, principal, correlation, data); err != nil {
		// The VM is saved and stopped, the log still says running: calls fail until the
		// environment is destroyed.
		return hostrpc.PauseResult{}, fmt.Errorf("pause %s: saved, but paused not appended: %w", env, err)
	}
	a.logger.Info("environment paused", "env", env, "reason", reason, "snapshot_bytes", p.Bytes, "location", p.Location,
		"pause_ms", p.Took.Milliseconds())
	return hostrpc.PauseResult{SnapshotBytes: p.Bytes, Location: p.Location, PauseMS: p.Took.Milliseconds()}, nil
}

// storeSnapshot copies the saved snapshot p of env into the object store and returns its
// location there. When that fails, the snapshot stays only on this host (its location
// unchanged): the environment resumes here, not elsewhere.
func (a *Agent) storeSnapshot(ctx context.Context, env string, p Paused) string {
	start := time.Now()
	n, err := a.snapshots.Put(ctx, env, p.Files)
	if err != nil {
		a.logger.Warn("snapshot not stored in the object store; it stays on this host only", "env", env, "err", err)
		return p.Location
	}
	a.logger.Info("snapshot stored", "env", env, "bytes", n, "ms", time.Since(start).Milliseconds())
	return hostrpc.StoredLocation(env)
}

// dropStored deletes the stored copy of env's snapshot, if it has one: after a resume it is
// out of date, after a destroy nobody needs it.
func (a *Agent) dropStored(ctx context.Context, env string, snap *events.Paused) error {
	if snap == nil {
		return nil
	}
	name, ok := hostrpc.StoredName(snap.Location)
	if !ok {
		return nil
	}
	return a.snapshots.Delete(ctx, name)
}

// resume starts a paused environment's VM from its snapshot, once its capacity is free again,
// and appends resumed. transparent says another call on the environment asked for it.
func (a *Agent) resume(ctx context.Context, env, principal, correlation string, transparent bool) (hostrpc.ResumeResult, error) {
	start := time.Now()
	e := a.lockEntry(env)
	defer a.unlockEntry(e)
	if err := e.agg.load(ctx, a.log); err != nil {
		return hostrpc.ResumeResult{}, err
	}
	a.mu.Lock()
	m := e.machine
	a.mu.Unlock()
	switch {
	case e.agg.State == events.StateRunning && m != nil:
		return hostrpc.ResumeResult{AlreadyRunning: true}, nil
	case e.agg.State != events.StatePaused:
		return hostrpc.ResumeResult{}, a.notHere(env, e.agg.State)
	}
	if m == nil { // else restored before, its resumed append failed
		res := a.resources(e.agg.Env)
		if reason := a.reserve(e, res); reason != "" {
			return hostrpc.ResumeResult{}, rpcErrorf(hostrpc.CodeBusy, "resume %s: %s", env, reason)
		}
		rctx, cancel := context.WithTimeout(ctx, a.cfg.BootTimeout)
		var err error
		m, err = a.machines.Resume(rctx, LaunchSpec{ID: env, Runtime: e.agg.Runtime, Resources: res,
			Lease: a.leaseFor(a.ttl(e.agg.Env))})
		cancel()
		if err != nil {
			a.mu.Lock()
			a.releaseLocked(e)
			a.mu.Unlock()
			return hostrpc.ResumeResult{}, fmt.Errorf("resume %s: %w", env, err)
		}
		a.setMachine(e, m)
	}
	took := time.Since(start)
	stored := e.agg.Snapshot
	if _, err := e.agg.appendEvent(ctx, a.log, events.EnvResumed, principal, correlation,
		events.Resumed{ResumeMillis: took.Milliseconds(), Transparent: transparent}); err != nil {
		return hostrpc.ResumeResult{}, fmt.Errorf("resume %s: running, but resumed not appended: %w", env, err)
	}
	if err := a.dropStored(ctx, env, stored); err != nil {
		a.logger.Warn("resumed; stored snapshot not deleted", "env", env, "err", err)
	}
	a.updateServing(e)
	a.markActive(e, time.Now(), false)
	a.logger.Info("environment resumed", "env", env, "transparent", transparent, "resume_ms", took.Milliseconds())
	return hostrpc.ResumeResult{ResumeMS: took.Milliseconds()}, nil
}

// fork starts spec's VM as a copy of the running environment src of this host (a paused one
// is resumed first), with the source's lifecycle held for the save.
func (a *Agent) fork(ctx context.Context, src string, spec LaunchSpec) (Machine, error) {
	t, err := a.running(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("fork of %s: %w", src, err)
	}
	se := a.lockEntry(src)
	defer a.unlockEntry(se)
	a.mu.Lock()
	m := se.machine
	a.mu.Unlock()
	if m != t.m || m == nil {
		return nil, fmt.Errorf("fork of %s: it stopped running meanwhile", src)
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.BootTimeout)
	defer cancel()
	start := time.Now()
	fm, err := a.machines.Fork(ctx, m, spec)
	if err != nil {
		return nil, fmt.Errorf("fork of %s: %w", src, err)
	}
	a.logger.Info("environment forked", "env", spec.ID, "from", src, "ms", time.Since(start).Milliseconds())
	return fm, nil
}

// resumeMoved starts spec's VM from the stored snapshot of src, a paused environment of the
// same tenant lost with its failed host (the router's resume_environment placed spec with
// resume_of), and deletes that snapshot once the VM runs: it is out of date from then on.
// Only a snapshot the log says is src's, stored by its host, is used.
func (a *Agent) resumeMoved(ctx context.Context, src string, spec LaunchSpec, owner string) (Machine, error) {
	evs, _, err := a.log.Load(ctx, events.EnvAggregate("*", src))
	if err != nil {
		return nil, fmt.Errorf("resume of %s: load it: %w", src, err)
	}
	old, err := events.FoldEnv(evs)
	if err != nil {
		return nil, fmt.Errorf("resume of %s: %w", src, err)
	}
	var name string
	if old.Snapshot != nil {
		name, _ = hostrpc.StoredName(old.Snapshot.Location)
	}
	switch {
	case len(evs) == 0 || old.Owner != owner:
		return nil, fmt.Errorf("resume of %s: no such environment of this tenant", src)
	case old.State != events.StateLost:
		return nil, fmt.Errorf("resume of %s: it is %s, not lost with its host", src, old.State)
	case name == "":
		return nil, fmt.Errorf("resume of %s: its snapshot is not in the object store", src)
	}
	dir, err := a.machines.PausedDir(spec.ID)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil { // left by an attempt that failed half-way
		return nil, fmt.Errorf("resume of %s: %w", src, err)
	}
	start := time.Now()
	n, err := a.snapshots.Get(ctx, name, dir, hostrpc.SnapshotMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("resume of %s: %w", src, err)
	}
	fetched := time.Since(start)
	rctx, cancel := context.WithTimeout(ctx, a.cfg.BootTimeout)
	defer cancel()
	m, err := a.machines.Resume(rctx, spec)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("resume of %s: %w", src, err), a.machines.DropPaused(ctx, spec.ID))
	}
	if err := a.snapshots.Delete(ctx, name); err != nil {
		a.logger.Warn("resumed elsewhere; stored snapshot not deleted", "env", spec.ID, "from", src, "err", err)
	}
	a.logger.Info("environment resumed from the object store", "env", spec.ID, "from", src, "bytes", n,
		"fetch_ms", fetched.Milliseconds(), "ms", time.Since(start).Milliseconds())
	return m, nil
}
