// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"time"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// StartProcess starts code in the background in one of the caller's environments and returns
// the process's id; req.Timeout (see hostrpc.Limits.Process) kills it.
func (r *Router) StartProcess(ctx context.Context, p Principal, env string, req ExecRequest) (*hostrpc.ProcessStartResult, error) {
	hreq := hostrpc.ProcessStartRequest{Env: env, Code: req.Code, Language: req.Language, Timeout: req.Timeout}
	if err := r.cfg.Limits.CheckProcessStart(&hreq); err != nil {
		return nil, refused(err)
	}
	own, err := r.codeTarget(ctx, p, env, &hreq.Language)
	if err != nil {
		return nil, err
	}
	var res hostrpc.ProcessStartResult
	err = r.call(ctx, p, env, own.host, hostrpc.OpProcessStart, r.cfg.FileRPCTimeout, hreq, &res)
	return &res, err
}

// ReadProcess returns a background process's output so far and whether it still runs.
func (r *Router) ReadProcess(ctx context.Context, p Principal, env, id string) (*hostrpc.ProcessResult, error) {
	return r.process(ctx, p, env, id, hostrpc.OpProcessRead, 0)
}

// WaitProcess waits up to wait (see hostrpc.Limits.ProcessWait) for a background process to
// end and returns its state then.
func (r *Router) WaitProcess(ctx context.Context, p Principal, env, id string, wait time.Duration) (*hostrpc.ProcessResult, error) {
	return r.process(ctx, p, env, id, hostrpc.OpProcessWait, wait)
}

// KillProcess kills a background process and returns its final state.
func (r *Router) KillProcess(ctx context.Context, p Principal, env, id string) (*hostrpc.ProcessResult, error) {
	return r.process(ctx, p, env, id, hostrpc.OpProcessKill, 0)
}

// process forwards a read, wait or kill of process id in env.
func (r *Router) process(ctx context.Context, p Principal, env, id, op string, wait time.Duration) (*hostrpc.ProcessResult, error) {
	req := hostrpc.ProcessRequest{Env: env, ProcessID: id, Timeout: wait}
	if err := r.cfg.Limits.CheckProcess(op, &req); err != nil {
		return nil, refused(err)
	}
	var res hostrpc.ProcessResult
	err := r.forward(ctx, p, env, op, req.Timeout+r.cfg.FileRPCTimeout, req, &res)
	return &res, err
}
