// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"time"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// maxProcessIDLen bounds a process id argument.
const maxProcessIDLen = 64

// StartProcess starts code in the background in one of the caller's environments and returns
// the process's id; req.Timeout (default hostrpc.DefaultProcessTimeout, at most
// hostrpc.MaxProcessTimeout) kills it.
func (r *Router) StartProcess(ctx context.Context, p Principal, env string, req ExecRequest) (*hostrpc.ProcessStartResult, error) {
	own, lang, err := r.checkCode(ctx, p, env, &req, hostrpc.DefaultProcessTimeout, hostrpc.MaxProcessTimeout)
	if err != nil {
		return nil, err
	}
	var res hostrpc.ProcessStartResult
	err = r.call(ctx, p, env, own.host, hostrpc.OpProcessStart, r.cfg.FileRPCTimeout,
		hostrpc.ProcessStartRequest{Env: env, Code: req.Code, Language: lang, Timeout: req.Timeout}, &res)
	return &res, err
}

// ReadProcess returns a background process's output so far and whether it still runs.
func (r *Router) ReadProcess(ctx context.Context, p Principal, env, id string) (*hostrpc.ProcessResult, error) {
	return r.process(ctx, p, env, id, hostrpc.OpProcessRead, 0)
}

// WaitProcess waits up to wait (default hostrpc.DefaultProcessWait, at most hostrpc.MaxProcessWait) for
// a background process to end and returns its state then.
func (r *Router) WaitProcess(ctx context.Context, p Principal, env, id string, wait time.Duration) (*hostrpc.ProcessResult, error) {
	wait, err := timeoutInRange(wait, hostrpc.DefaultProcessWait, hostrpc.MaxProcessWait)
	if err != nil {
		return nil, err
	}
	return r.process(ctx, p, env, id, hostrpc.OpProcessWait, wait)
}

// KillProcess kills a background process and returns its final state.
func (r *Router) KillProcess(ctx context.Context, p Principal, env, id string) (*hostrpc.ProcessResult, error) {
	return r.process(ctx, p, env, id, hostrpc.OpProcessKill, 0)
}

// process forwards a read, wait or kill of process id in env.
func (r *Router) process(ctx context.Context, p Principal, env, id, op string, wait time.Duration) (*hostrpc.ProcessResult, error) {
	if id == "" || len(id) > maxProcessIDLen {
		return nil, userErr(KindBadRequest, "process_id %q is invalid: give the id start_process returned", id)
	}
	var res hostrpc.ProcessResult
	err := r.forward(ctx, p, env, op, wait+r.cfg.FileRPCTimeout,
		hostrpc.ProcessRequest{Env: env, ProcessID: id, Timeout: wait}, &res)
	return &res, err
}
