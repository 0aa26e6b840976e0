// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"fmt"

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
