// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// Fencing. Membership can declare a live host dead (it was paused, its UDP was lost, a message
// was forged); the survivors then append host.failed and lost for its environments, and new
// environments go elsewhere. The host must then stop serving those environments at once: it
// checks before every call that its environment was not declared lost (errFenced), and when
// its placement consumer delivers lost for one of its environments, or host.failed for its own
// incarnation, it kills their VMs, releases their capacity, and (for host.failed) announces a
// new incarnation before it takes placements again.

// errFenced refuses a call on an environment the cluster has declared lost.
func errFenced(env string) error {
	return rpcErrorf(hostrpc.CodeNotRunning, "environment %s is lost: its host was declared failed; create a new environment", env)
}

// declaredLost reports whether the log holds a lost event for env of this host (one read of
// the stream per call: the price of never serving an environment the cluster gave up).
// An answer that took longer than freshLost may be older than a failure detection (the host
// was cut off while it waited, and the answer came once the network healed), so the check is
// made again, up to lostChecks times.
func (a *Agent) declaredLost(ctx context.Context, env string) (bool, error) {
	for range lostChecks {
		start := time.Now()
		h, err := a.log.Head(ctx, events.EnvSubject(a.cfg.HostID, env, events.EnvLost))
		if err != nil {
			return false, fmt.Errorf("check environment %s: %w", env, err)
		}
		if h.Seq != 0 || time.Since(start) <= freshLost {
			return h.Seq != 0, nil
		}
	}
	return false, fmt.Errorf("check environment %s: the event log answered %d times in more than %s: cannot tell whether it was declared lost", env, lostChecks, freshLost)
}

// freshLost and lostChecks: see declaredLost. Failure detection takes more than 500 ms.
const (
	freshLost  = 500 * time.Millisecond
	lostChecks = 3
)

// fenceEnv stops serving env and kills its VM after the cluster declared it lost.
func (a *Agent) fenceEnv(ctx context.Context, env string) error {
	e := a.lockEntry(env)
	defer a.unlockEntry(e)
	a.mu.Lock()
	m := e.machine
	e.serving = false
	a.mu.Unlock()
	a.procs.drop(env)
	if m == nil {
		return nil
	}
	a.logger.Warn("fencing: environment declared lost; stopping its VM", "env", env)
	if err := a.stopMachine(ctx, m); err != nil {
		return err
	}
	a.setMachine(e, nil)
	a.pool.unclaim(env)
	e.agg.loaded = false // the next use re-reads the lost
	return nil
}

// fenceHost handles host.failed for this host: if it is about this incarnation, every
// environment of the host is fenced (and declared lost, should no survivor have done it) and
// the host announces a new incarnation.
func (a *Agent) fenceHost(ctx context.Context, ev *events.Event) error {
	var f events.HostFailure
	if err := ev.DecodeData(&f); err != nil {
		return err
	}
	joinSeq := a.currentJoin()
	if joinSeq == 0 || f.JoinSeq != 0 && f.JoinSeq != joinSeq || f.JoinSeq == 0 && ev.Seq < joinSeq {
		return nil // about an earlier incarnation (this one has not joined yet, or joined since)
	}
	a.logger.Warn("fencing: this host was declared failed; stopping its environments", "detected_by", f.DetectedBy, "join_seq", joinSeq)
	if err := a.markHostLost(ctx, a.cfg.HostID); err != nil {
		return err
	}
	var errs []error
	for _, id := range a.envsWithVM() {
		errs = append(errs, a.fenceEnv(ctx, id))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return a.join(ctx)
}
