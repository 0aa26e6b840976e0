// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// PauseResult is the outcome of pause_environment.
type PauseResult struct {
	ID            string `json:"environment_id"`
	Status        string `json:"status"`
	SnapshotBytes int64  `json:"snapshot_bytes"`
	PauseMS       int64  `json:"pause_ms"`
	Message       string `json:"message"`
}

// ResumeResult is the outcome of resume_environment.
type ResumeResult struct {
	ID       string `json:"environment_id"`
	Status   string `json:"status"`
	ResumeMS int64  `json:"resume_ms"`
	// MovedFrom is set when the environment's host had failed and it was resumed on another
	// host as the new environment ID: the environment that was paused.
	MovedFrom string `json:"moved_from,omitempty"`
	Host      string `json:"host,omitempty"`
	Message   string `json:"message"`
}

// Pause saves one of the caller's running environments on its host (memory, processes,
// files) and stops its VM; any later call on it, or Resume, runs it again.
func (r *Router) Pause(ctx context.Context, p Principal, env string) (*PauseResult, error) {
	var res hostrpc.PauseResult
	if err := r.forward(ctx, p, env, hostrpc.OpPause, r.cfg.BootTimeout+r.cfg.RPCMargin, hostrpc.EnvRequest{Env: env}, &res); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("Environment %s is paused (snapshot of %d MiB); any call on it, or resume_environment, resumes it", env, res.SnapshotBytes>>20)
	if res.AlreadyPaused {
		msg = fmt.Sprintf("Environment %s was already paused", env)
	}
	return &PauseResult{ID: env, Status: events.StatePaused, SnapshotBytes: res.SnapshotBytes, PauseMS: res.PauseMS, Message: msg}, nil
}

// Resume runs one of the caller's paused environments again from its snapshot, with its files
// and running processes. One lost with its host whose snapshot is in the object store
// (--snapshot-store objects) is resumed on another host as a new environment (see
// resumeElsewhere).
func (r *Router) Resume(ctx context.Context, p Principal, env string) (*ResumeResult, error) {
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return nil, err
	}
	evs, head, err := r.log.Load(ctx, events.EnvAggregate(own.host, env))
	if err != nil {
		return nil, fmt.Errorf("load environment %s: %w", env, err)
	}
	if len(evs) == 0 {
		return nil, notFound(env)
	}
	e, err := events.FoldEnv(evs)
	if err != nil {
		return nil, err
	}
	switch _, stored := storedSnapshot(e); {
	case e.State == events.StateMoved:
		return nil, userErr(KindNotRunning, "environment %s was resumed on another host as environment %s: use that id", env, e.MovedTo)
	case e.State == events.StateLost && stored:
		return r.resumeElsewhere(ctx, p, e, head)
	case e.State == events.StateLost && e.Snapshot != nil:
		return nil, userErr(KindNotRunning, "environment %s was paused on host %s, which failed; its snapshot was only on that host "+
			"(resume on another host needs host agents run with --snapshot-store objects)", env, e.Host)
	}
	var res hostrpc.ResumeResult
	if err := r.forward(ctx, p, env, hostrpc.OpResume, r.cfg.BootTimeout+r.cfg.RPCMargin, hostrpc.EnvRequest{Env: env}, &res); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("Environment %s is running again (resumed in %d ms)", env, res.ResumeMS)
	if res.AlreadyRunning {
		msg = fmt.Sprintf("Environment %s was already running", env)
	}
	return &ResumeResult{ID: env, Status: events.StateRunning, ResumeMS: res.ResumeMS, Message: msg}, nil
}

// storedSnapshot is the name of e's snapshot in the object store, if it has one.
func storedSnapshot(e events.Env) (string, bool) {
	if e.Snapshot == nil {
		return "", false
	}
	return hostrpc.StoredName(e.Snapshot.Location)
}

// resumeElsewhere resumes the lost paused environment src (its aggregate at head) on a live
// host: an environment's host never changes, so this creates a new environment of the caller
// (same runtime, size, name and timeout) that starts from src's stored snapshot, and then
// appends moved to src, naming it. When another call moved src meanwhile, the new environment
// is destroyed again and the answer names the one that call made.
func (r *Router) resumeElsewhere(ctx context.Context, p Principal, src events.Env, head events.Head) (*ResumeResult, error) {
	start := time.Now()
	info, err := r.Create(ctx, p, CreateRequest{Runtime: src.Runtime, Name: src.Name, TTL: src.TTL(), CPUs: src.Resources.CPUs,
		MemoryMiB: src.Resources.MemoryMiB, OnTimeout: src.OnTimeout, ResumeOf: src.ID})
	if err != nil {
		return nil, err
	}
	moved, err := events.NewEnvEvent(src.Host, src.ID, events.EnvMoved, p.String(), events.Moved{To: info.ID})
	if err != nil {
		return nil, err
	}
	moved.Correlation = RequestID(ctx)
	if _, err := r.log.Append(ctx, moved, head); err != nil {
		r.abandon(ctx, p, info.Host, info.ID, reasonMovedMeanwhile)
		if errors.Is(err, events.ErrConflict) {
			return nil, userErr(KindBusy, "environment %s changed while it was being resumed on another host (another resume_environment?): "+
				"call get_environment on it for where it runs now", src.ID)
		}
		return nil, fmt.Errorf("resume %s elsewhere: append moved: %w", src.ID, err)
	}
	took := time.Since(start)
	r.logger.Info("environment resumed on another host", "env", src.ID, "as", info.ID, "host", info.Host,
		"failed_host", src.Host, "ms", took.Milliseconds(), "request", RequestID(ctx))
	return &ResumeResult{ID: info.ID, Status: events.StateRunning, ResumeMS: took.Milliseconds(), MovedFrom: src.ID, Host: info.Host,
		Message: fmt.Sprintf("Environment %s's host %s failed; it was resumed on host %s as the new environment %s "+
			"(its files and running processes as paused): use %s from now on", src.ID, src.Host, info.Host, info.ID, info.ID)}, nil
}

// Fork starts a new environment of the caller as a running copy of env: the same files and
// running processes (env is paused only for the save; a paused env is resumed first), its own
// identity, independent from then on. It runs on env's host, with env's size and timeout.
func (r *Router) Fork(ctx context.Context, p Principal, env, name string) (*EnvInfo, error) {
	own, evs, err := r.history(ctx, p, env)
	if err != nil {
		return nil, err
	}
	src, err := events.FoldEnv(evs)
	if err != nil {
		return nil, err
	}
	if src.State != events.StateRunning && src.State != events.StatePaused {
		return nil, userErr(KindNotRunning, "environment %s is %s: only a running or paused environment can be forked", env, src.State)
	}
	req, err := r.normalize(CreateRequest{Runtime: src.Runtime, Name: name, TTL: src.TTL(), CPUs: src.Resources.CPUs,
		MemoryMiB: src.Resources.MemoryMiB, OnTimeout: src.OnTimeout, ForkOf: env})
	if err != nil {
		return nil, err
	}
	fork := strings.ToLower(ulid.Make().String())
	if err := r.reserve(ctx, p, fork, req.MemoryMiB); err != nil {
		return nil, err
	}
	info, rejected, err := r.placeOn(ctx, p, placement{env: fork, host: own.host}, req)
	if err != nil {
		return nil, err
	}
	if rejected != "" {
		r.unreserve(ctx, p, fork)
		return nil, userErr(KindNoCapacity, "host %s cannot fork environment %s: %s", own.host, env, rejected)
	}
	return info, nil
}
