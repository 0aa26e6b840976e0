// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"fmt"
	"strings"

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
	Message  string `json:"message"`
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
// and running processes.
func (r *Router) Resume(ctx context.Context, p Principal, env string) (*ResumeResult, error) {
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
