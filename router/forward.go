// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// ExecRequest is what execute asks for; zero fields take defaults (the environment's runtime,
// the configured timeout).
type ExecRequest struct {
	Code     string
	Language string
	Timeout  time.Duration
}

// refused turns a request refused by the Limits into the caller's error.
func refused(err error) error {
	var he *hostrpc.Error
	if !errors.As(err, &he) {
		return err
	}
	kind := KindBadRequest
	if he.Code == hostrpc.CodeTooLarge {
		kind = KindTooLarge
	}
	return userErr(kind, "%s", he.Message)
}

// Exec runs code in one of the caller's environments. A non-zero exit code is a result.
func (r *Router) Exec(ctx context.Context, p Principal, env string, req ExecRequest) (*hostrpc.ExecResult, error) {
	hreq := hostrpc.ExecRequest{Env: env, Code: req.Code, Language: req.Language, Timeout: req.Timeout}
	if err := r.cfg.Limits.CheckExec(&hreq); err != nil {
		return nil, refused(err)
	}
	own, err := r.codeTarget(ctx, p, env, &hreq.Language)
	if err != nil {
		return nil, err
	}
	var res hostrpc.ExecResult
	start := time.Now()
	err = r.call(ctx, p, env, own.host, hostrpc.OpExec, hreq.Timeout+r.cfg.RPCMargin, hreq, &res)
	if res.Timing != nil {
		res.Timing.RPCMS = hostrpc.Millis(time.Since(start))
	}
	return &res, err
}

// codeTarget checks the language of execute and start_process, finds the caller's environment,
// and fills the language in (default: the environment's runtime).
func (r *Router) codeTarget(ctx context.Context, p Principal, env string, language *string) (ownerEntry, error) {
	if *language != "" && !knownRuntime(*language) {
		return ownerEntry{}, userErr(KindBadRequest, "unknown language %q: use one of %s", *language, strings.Join(Runtimes(), ", "))
	}
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return ownerEntry{}, err
	}
	if *language == "" {
		*language = own.runtime
	}
	return own, nil
}

// Install installs packages (one spec each) with the environment's package manager (pip, npm
// or apt) from the host's package proxy; the specs must follow the package rule of the
// environment's runtime. A failed install (an unknown package or version, an upstream that is
// down) is a caller's error carrying the package manager's message.
func (r *Router) Install(ctx context.Context, p Principal, env string, packages []string) (*hostrpc.InstallResult, error) {
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return nil, err
	}
	req := hostrpc.InstallRequest{Env: env, Packages: packages}
	if err := r.cfg.Limits.CheckInstall(own.runtime, &req); err != nil {
		return nil, refused(err)
	}
	var res hostrpc.InstallResult
	err = r.call(ctx, p, env, own.host, hostrpc.OpInstallPackages, req.Timeout+r.cfg.RPCMargin, req, &res)
	return &res, err
}

// WriteFile writes content to path in one of the caller's environments. Content too large for
// one NATS message goes to the host as a transfer object.
func (r *Router) WriteFile(ctx context.Context, p Principal, env, path string, content []byte) (*hostrpc.WriteFileResult, error) {
	req := hostrpc.WriteFileRequest{Env: env, Path: path, Content: content}
	if err := r.cfg.Limits.CheckWriteFile(&req); err != nil {
		return nil, refused(err)
	}
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return nil, err
	}
	if !hostrpc.Inline(len(content), r.nc.MaxPayload()) {
		if req.ContentRef, err = r.transfers.Put(ctx, content); err != nil {
			return nil, fmt.Errorf("write_file: %w", err)
		}
		req.Content = nil
	}
	var res hostrpc.WriteFileResult
	err = r.call(ctx, p, env, own.host, hostrpc.OpWriteFile, r.cfg.FileRPCTimeout, req, &res)
	if err != nil && req.ContentRef != "" {
		// The host deletes the object once it has read it; after a failure it may not have.
		r.deleteTransfer(ctx, req.ContentRef)
	}
	return &res, err
}

// ReadFile reads a file from one of the caller's environments. A file too large for one NATS
// message comes back as a transfer object, which ReadFile fetches and deletes.
func (r *Router) ReadFile(ctx context.Context, p Principal, env, path string) (*hostrpc.ReadFileResult, error) {
	req := hostrpc.ReadFileRequest{Env: env, Path: path}
	if err := r.cfg.Limits.CheckReadFile(&req); err != nil {
		return nil, refused(err)
	}
	var res hostrpc.ReadFileResult
	err := r.forward(ctx, p, env, hostrpc.OpReadFile, r.cfg.FileRPCTimeout, req, &res)
	if err != nil || res.ContentRef == "" {
		return &res, err
	}
	data, err := r.transfers.Get(ctx, res.ContentRef, req.Max)
	r.deleteTransfer(ctx, res.ContentRef)
	switch {
	case errors.Is(err, hostrpc.ErrTransferTooLarge):
		return nil, userErr(KindTooLarge, "file %s is larger than %d bytes, the limit per file", req.Path, req.Max)
	case err != nil:
		return nil, fmt.Errorf("read_file: %w", err)
	case int64(len(data)) != res.Size:
		return nil, fmt.Errorf("read_file: host reported %d bytes, its transfer object holds %d", res.Size, len(data))
	}
	res.Content, res.ContentRef = data, ""
	return &res, nil
}

// deleteTransfer removes a transfer object, even when ctx has ended; one it cannot remove
// expires after hostrpc.TransferTTL.
func (r *Router) deleteTransfer(ctx context.Context, ref string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.transfers.Delete(ctx, ref); err != nil {
		r.logger.Warn("transfer object not deleted; it expires", "request", RequestID(ctx), "ref", ref,
			"ttl", hostrpc.TransferTTL, "err", err)
	}
}

// ListFiles lists a directory (recursively if asked; hostrpc.HomeDir when path is empty) in
// one of the caller's environments.
func (r *Router) ListFiles(ctx context.Context, p Principal, env, path string, recursive bool) (*hostrpc.ListFilesResult, error) {
	req := hostrpc.ListFilesRequest{Env: env, Path: path, Recursive: recursive}
	if err := r.cfg.Limits.CheckListFiles(&req); err != nil {
		return nil, refused(err)
	}
	var res hostrpc.ListFilesResult
	err := r.forward(ctx, p, env, hostrpc.OpListFiles, r.cfg.FileRPCTimeout, req, &res)
	return &res, err
}

// forward sends one host RPC about env to the host it is placed on, if the caller owns env.
func (r *Router) forward(ctx context.Context, p Principal, env, op string, timeout time.Duration, req, resp any) error {
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return err
	}
	return r.call(ctx, p, env, own.host, op, timeout, req, resp)
}

// call sends one host RPC with the caller's principal and the request id, and decodes the
// answer into resp; the host's error codes become caller-facing errors.
func (r *Router) call(ctx context.Context, p Principal, env, host, op string, timeout time.Duration, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", op, err)
	}
	msg := nats.NewMsg(hostrpc.Subject(host, op))
	msg.Data = data
	msg.Header.Set(hostrpc.HeaderPrincipal, p.String())
	msg.Header.Set(hostrpc.HeaderCorrelation, RequestID(ctx))
	if fn := outputFrom(ctx); fn != nil {
		id, out, err := r.openOutput(ctx, host, fn)
		if err != nil {
			return err
		}
		msg.Header.Set(hostrpc.HeaderStream, id)
		var reply *nats.Msg
		defer func() { out.finish(reply) }()
		reply, err = r.request(ctx, op, msg, timeout)
		return r.answer(ctx, env, host, op, timeout, reply, err, resp)
	}
	reply, err := r.request(ctx, op, msg, timeout)
	return r.answer(ctx, env, host, op, timeout, reply, err, resp)
}

// request sends msg (a request of op) and waits up to timeout for the reply.
func (r *Router) request(ctx context.Context, op string, msg *nats.Msg, timeout time.Duration) (*nats.Msg, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer r.metrics.hostRPCDone(op, time.Now())
	return r.nc.RequestMsgWithContext(rctx, msg)
}

// answer decodes a host's reply to op into resp; the host's error codes, no answer and a
// timeout become caller-facing errors.
func (r *Router) answer(ctx context.Context, env, host, op string, timeout time.Duration, reply *nats.Msg, err error, resp any) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		if e := r.envState(ctx, host, env); e.State != events.StateRunning {
			return notRunning(e)
		}
		return userErr(KindFailed, "host %s of environment %s is not answering (%s); the environment cannot be reached, create a new one",
			host, env, r.hostState(ctx, host))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return userErr(KindTimeout, "host %s did not answer %s for environment %s within %s", host, op, env, timeout)
	case err != nil:
		return fmt.Errorf("%s on host %s: %w", op, host, err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		he := hostrpc.Error{Code: code, Message: reply.Header.Get(micro.ErrorHeader)}
		if len(reply.Data) > 0 {
			_ = json.Unmarshal(reply.Data, &he)
		}
		return r.hostError(ctx, env, host, op, he)
	}
	if err := json.Unmarshal(reply.Data, resp); err != nil {
		return fmt.Errorf("decode %s answer from host %s: %w", op, host, err)
	}
	return nil
}

// hostError turns a host's error reply into what the caller sees.
func (r *Router) hostError(ctx context.Context, env, host, op string, he hostrpc.Error) error {
	msg := orDefault(he.Message, he.Code)
	switch he.Code {
	case hostrpc.CodeBadRequest:
		return userErr(KindBadRequest, "%s", msg)
	case hostrpc.CodeNotFound:
		if e := r.envState(ctx, host, env); e.State != events.StateRunning {
			return notRunning(e)
		}
		return userErr(KindNotFound, "%s", msg)
	case hostrpc.CodeTooLarge:
		return userErr(KindTooLarge, "%s", msg)
	case hostrpc.CodeFailed:
		return userErr(KindFailed, "%s", msg)
	case hostrpc.CodeNotRunning:
		return notRunning(r.envState(ctx, host, env))
	case hostrpc.CodeBusy:
		return userErr(KindBusy, "%s; %s did not run, it is safe to retry in a moment", msg, op)
	}
	return fmt.Errorf("%s on host %s: %s: %s", op, host, he.Code, msg)
}

// notRunning is the caller's error for a call on an environment that is not running: its
// state and, for one that ended badly (lost with its host, failed), why.
func notRunning(e events.Env) error {
	hint := "wait until create_environment returns"
	if events.Terminal(e.State) || e.State == events.StateDestroying {
		hint = "create a new environment"
	}
	state := e.State
	if e.LastError != "" && events.Terminal(e.State) {
		state += ": " + e.LastError
	}
	return userErr(KindNotRunning, "environment %s is not running (state: %s): %s", e.ID, state, hint)
}

// envState is an environment as its events tell it, for error messages (State "unknown" when
// they cannot be read).
func (r *Router) envState(ctx context.Context, host, env string) events.Env {
	unknown := events.Env{ID: env, State: "unknown"}
	evs, _, err := r.log.Load(ctx, events.EnvAggregate(host, env))
	if err != nil {
		return unknown
	}
	e, err := events.FoldEnv(evs)
	if err != nil || e.State == events.StateNone {
		return unknown
	}
	return e
}

// hostState describes a host's state in the view, for error messages.
func (r *Router) hostState(ctx context.Context, host string) string {
	hosts, err := r.view.Hosts(ctx)
	if err != nil {
		return "host state unknown"
	}
	for _, h := range hosts {
		if h.ID == host {
			return "host state: " + orDefault(h.State, "unknown")
		}
	}
	return "host unknown to the view"
}
