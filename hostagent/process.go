// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// Lifetimes of the background processes of one environment (Limits.MaxProcesses bounds their
// number).
const (
	processRetention = 10 * time.Minute // a finished process is forgotten after this, read or not
	processKillWait  = 15 * time.Second // how long process_kill waits for the process to end
)

// process is one background command started by process_start. Its output streams into capped
// buffers that reads copy; done closes once the command has ended and res, killed and ended are
// set.
type process struct {
	id             string
	start          time.Time
	cancel         context.CancelFunc
	stdout, stderr *streamBuffer
	done           chan struct{}

	mu     sync.Mutex
	killed bool
	ended  time.Time
	res    ExecResult
}

// result is the process's state as a reply; output is everything so far.
func (p *process) result() hostrpc.ProcessResult {
	out := hostrpc.ProcessResult{ProcessID: p.id, Running: true}
	select {
	case <-p.done:
		p.mu.Lock()
		out.Running, out.Killed = false, p.killed
		out.ExitCode, out.TimedOut, out.Truncated = p.res.ExitCode, p.res.TimedOut, p.res.Truncated
		out.DurationMS = p.res.Duration.Milliseconds()
		p.mu.Unlock()
	default:
		out.DurationMS = time.Since(p.start).Milliseconds()
	}
	var outFull, errFull bool
	out.Stdout, outFull = p.stdout.text()
	out.Stderr, errFull = p.stderr.text()
	if out.Running {
		out.Truncated = outFull || errFull
	}
	return out
}

// streamBuffer collects one stream of a process; the guest already cuts it at max bytes, so
// while the process runs, holding max bytes means the output may have been cut (the guest's
// result says for sure once it has ended). Writers watching it (process_wait calls that
// stream) get each write as it comes.
type streamBuffer struct {
	mu       sync.Mutex
	max      int
	buf      []byte
	watchers []io.Writer
}

func (b *streamBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := p[:min(len(p), max(b.max-len(b.buf), 0))]
	b.buf = append(b.buf, keep...)
	for _, w := range b.watchers {
		_, _ = w.Write(keep) // an outputStream never fails nor blocks
	}
	return len(p), nil
}

// watch passes what is written from now on to w too, until the returned func is called.
func (b *streamBuffer) watch(w io.Writer) (stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watchers = append(b.watchers, w)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.watchers = slices.DeleteFunc(b.watchers, func(x io.Writer) bool { return x == w })
	}
}

func (b *streamBuffer) text() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf), len(b.buf) >= b.max
}

// processTable holds the background processes of each environment, at most max per
// environment.
type processTable struct {
	max   int
	mu    sync.Mutex
	byEnv map[string]map[string]*process
}

func newProcessTable(max int) *processTable {
	return &processTable{max: max, byEnv: map[string]map[string]*process{}}
}

// add registers p in env, after forgetting env's expired processes, unless env is full.
func (t *processTable) add(env string, p *process, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	procs := t.byEnv[env]
	for id, q := range procs {
		q.mu.Lock()
		expired := !q.ended.IsZero() && now.Sub(q.ended) > processRetention
		q.mu.Unlock()
		if expired {
			delete(procs, id)
		}
	}
	if len(procs) >= t.max {
		return rpcErrorf(hostrpc.CodeBadRequest, "environment %s already has %d background processes: read, wait for or kill one first", env, len(procs))
	}
	if procs == nil {
		procs = map[string]*process{}
		t.byEnv[env] = procs
	}
	procs[p.id] = p
	return nil
}

// busy reports whether env has a running process.
func (t *processTable) busy(env string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.byEnv[env] {
		select {
		case <-p.done:
		default:
			return true
		}
	}
	return false
}

// get finds a process of env, or a not_found error.
func (t *processTable) get(env, id string) (*process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byEnv[env][id]
	if p == nil {
		return nil, rpcErrorf(hostrpc.CodeNotFound, "no process %s in environment %s: it never existed, or it ended and its result was read or is older than %s",
			id, env, processRetention)
	}
	return p, nil
}

// forget removes a process whose end has been reported.
func (t *processTable) forget(env, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byEnv[env], id)
	if len(t.byEnv[env]) == 0 {
		delete(t.byEnv, env)
	}
}

// drop kills and forgets all processes of env (its VM is going away).
func (t *processTable) drop(env string) {
	t.mu.Lock()
	procs := t.byEnv[env]
	delete(t.byEnv, env)
	t.mu.Unlock()
	for _, p := range procs {
		p.cancel()
	}
}

func newProcessID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "p-" + hex.EncodeToString(b[:])
}

func (a *Agent) rpcProcessStart(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.ProcessStartRequest
	if err := decode(c, &req, func() string { return req.Env }, a.cfg.Limits.CheckProcessStart); err != nil {
		return nil, err
	}
	r, err := a.prepareCode(ctx, req.Env, req.Code, req.Language)
	if err != nil {
		return nil, err
	}
	limit := a.outputCap()
	p := &process{id: newProcessID(), start: time.Now(), done: make(chan struct{}),
		stdout: &streamBuffer{max: limit}, stderr: &streamBuffer{max: limit}}
	r.spec.Stdout, r.spec.Stderr = p.stdout, p.stderr
	// The process outlives this call but not the agent's Run.
	pctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	if err := a.procs.add(req.Env, p, p.start); err != nil {
		cancel()
		return nil, err
	}
	a.auditExec(ctx, r, c, ExecResult{}, pkgproxy.Fetches{}, nil, events.ExecStarted)
	a.goTask(func() {
		defer cancel()
		res, fetched, err := a.execute(pctx, r.t, r.spec, req.Timeout)
		p.mu.Lock()
		p.killed = pctx.Err() != nil
		if err != nil && !p.killed {
			a.logger.Warn("rpc: background process failed", "env", req.Env, "process", p.id, "err", err)
		}
		var runErr error
		if err != nil {
			// Killed, or the guest failed: the output so far is what the streams got.
			stdout, outFull := p.stdout.text()
			stderr, errFull := p.stderr.text()
			res = ExecResult{Stdout: []byte(stdout), Stderr: []byte(stderr), ExitCode: -1, Duration: time.Since(p.start),
				Truncated: outFull || errFull}
			if !p.killed {
				runErr = err
			}
		}
		p.res, p.ended = res, time.Now()
		p.mu.Unlock()
		// Audit before the end is reported, so a caller who saw it also finds the event.
		a.auditExec(ctx, r, c, res, fetched, runErr, events.ExecEnded)
		close(p.done)
	})
	return hostrpc.ProcessStartResult{ProcessID: p.id}, nil
}

// processCall finds the process a read, wait or kill is about, in a running environment.
// The call counts as activity of the environment.
func (a *Agent) processCall(ctx context.Context, c *rpcCall) (hostrpc.ProcessRequest, *process, error) {
	var req hostrpc.ProcessRequest
	if err := decode(c, &req, func() string { return req.Env }, func(r *hostrpc.ProcessRequest) error {
		return a.cfg.Limits.CheckProcess(c.op, r)
	}); err != nil {
		return req, nil, err
	}
	t, err := a.running(ctx, req.Env)
	if err != nil {
		return req, nil, err
	}
	p, err := a.procs.get(req.Env, req.ProcessID)
	if err != nil {
		return req, nil, err
	}
	a.audit(ctx, t, c, "", nil)
	return req, p, nil
}

// report answers with p's state and forgets p once the answer says it ended.
func (a *Agent) report(env string, p *process) (any, error) {
	res := p.result()
	if !res.Running {
		a.procs.forget(env, p.id)
	}
	fitReply(&res.ExecResult, a.maxPayload()-replyOverhead)
	return res, nil
}

func (a *Agent) rpcProcessRead(ctx context.Context, c *rpcCall) (any, error) {
	req, p, err := a.processCall(ctx, c)
	if err != nil {
		return nil, err
	}
	return a.report(req.Env, p)
}

func (a *Agent) rpcProcessWait(ctx context.Context, c *rpcCall) (any, error) {
	req, p, err := a.processCall(ctx, c)
	if err != nil {
		return nil, err
	}
	if stdout, stderr := c.stream.writers(); stdout != nil {
		defer p.stdout.watch(stdout)()
		defer p.stderr.watch(stderr)()
	}
	wait := time.NewTimer(req.Timeout)
	defer wait.Stop()
	select {
	case <-p.done:
	case <-wait.C:
	case <-ctx.Done():
		return nil, fmt.Errorf("process_wait: %w", ctx.Err())
	}
	return a.report(req.Env, p)
}

func (a *Agent) rpcProcessKill(ctx context.Context, c *rpcCall) (any, error) {
	req, p, err := a.processCall(ctx, c)
	if err != nil {
		return nil, err
	}
	p.cancel()
	wait := time.NewTimer(processKillWait)
	defer wait.Stop()
	select {
	case <-p.done:
	case <-wait.C:
		return nil, fmt.Errorf("process_kill: process %s did not end within %s", p.id, processKillWait)
	case <-ctx.Done():
		return nil, fmt.Errorf("process_kill: %w", ctx.Err())
	}
	return a.report(req.Env, p)
}
