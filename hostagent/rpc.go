// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// Guest conventions of the exec and file service.
const (
	PythonPath = "/opt/venv/bin/python"
	// fileOpTimeout bounds one file operation.
	fileOpTimeout = time.Minute
	// replyOverhead is what a reply's JSON needs beyond its payload bytes.
	replyOverhead = 4 << 10
)

// rpcErrorf is a reply error with its hostrpc code.
func rpcErrorf(code, format string, args ...any) error {
	return &hostrpc.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// rpcCall is one request with the caller's identity.
type rpcCall struct {
	arrived     time.Time
	op          string
	data        []byte
	reply       string
	principal   string
	correlation string
	// stream, if the caller asked for one, carries the call's output while it runs.
	stream *outputStream
}

type rpcHandler func(ctx context.Context, c *rpcCall) (any, error)

// startRPC starts the micro service of this host on waggle.rpc.<host>.<op>.
func (a *Agent) startRPC(ctx context.Context) (micro.Service, error) {
	svc, err := micro.AddService(a.nc, micro.Config{
		Name:        "waggle-hostagent",
		Version:     "1.0.0",
		Description: "exec and file service of waggle host " + a.cfg.HostID,
		Metadata:    map[string]string{"host": a.cfg.HostID},
	})
	if err != nil {
		return nil, fmt.Errorf("rpc service: %w", err)
	}
	group := svc.AddGroup("waggle.rpc." + a.cfg.HostID)
	// A ping is answered at once, outside the call slots: failure detectors ask it (peerAnswers).
	pong, _ := json.Marshal(map[string]string{"host": a.cfg.HostID})
	if err := group.AddEndpoint(hostrpc.OpPing, micro.HandlerFunc(func(req micro.Request) { _ = req.Respond(pong) })); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("rpc service: endpoint %s: %w", hostrpc.OpPing, err)
	}
	slots := newCallSlots(a.cfg.HostID, a.cfg.MaxConcurrentRPCs, a.cfg.MaxRPCsPerEnv)
	handlers := map[string]rpcHandler{
		hostrpc.OpExec:            a.rpcExec,
		hostrpc.OpInstallPackages: a.rpcInstall,
		hostrpc.OpWriteFile:       a.rpcWriteFile,
		hostrpc.OpReadFile:        a.rpcReadFile,
		hostrpc.OpListFiles:       a.rpcListFiles,
		hostrpc.OpProcessStart:    a.rpcProcessStart,
		hostrpc.OpProcessRead:     a.rpcProcessRead,
		hostrpc.OpProcessWait:     a.rpcProcessWait,
		hostrpc.OpProcessKill:     a.rpcProcessKill,
		hostrpc.OpPause:           a.rpcPause,
		hostrpc.OpResume:          a.rpcResume,
	}
	for op, h := range handlers {
		err := group.AddEndpoint(op, micro.HandlerFunc(func(req micro.Request) {
			// micro calls a handler on the endpoint's subscription goroutine: long execs run
			// in their own task so one call never blocks the next. The task answers on the
			// reply subject itself (micro's Request must not be used after the handler returns).
			c := &rpcCall{arrived: time.Now(), op: op, data: req.Data(), reply: req.Reply(),
				principal: req.Headers().Get(hostrpc.HeaderPrincipal), correlation: req.Headers().Get(hostrpc.HeaderCorrelation)}
			if c.principal == "" {
				c.principal = "unknown"
			}
			var err error
			if c.stream, err = a.openStream(a.cfg.HostID, req.Headers().Get(hostrpc.HeaderStream)); err != nil {
				a.respond(c, nil, err)
				return
			}
			release, err := slots.acquire(requestEnv(c.data))
			if err != nil {
				a.metrics.rpcRefused.Inc()
				a.respond(c, nil, err)
				return
			}
			a.metrics.rpcInFlight.Inc()
			a.goTask(func() {
				defer func() { release(); a.metrics.rpcInFlight.Dec() }()
				res, err := h(ctx, c)
				a.respond(c, res, err)
			})
		}))
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("rpc service: endpoint %s: %w", op, err)
		}
	}
	return svc, nil
}

// respond sends a call's result, or its error as a micro service error (code and message in
// the Nats-Service-Error-Code / Nats-Service-Error headers, hostrpc.Error in the body). The
// call's output stream ends first, and the reply says how many chunks it carried.
func (a *Agent) respond(c *rpcCall, res any, err error) {
	msg := nats.NewMsg(c.reply)
	if c.stream != nil {
		msg.Header.Set(hostrpc.HeaderStreamChunks, strconv.FormatUint(c.stream.close(), 10))
	}
	if err == nil {
		msg.Data, err = json.Marshal(res)
		if err == nil && len(msg.Data) > a.maxPayload() {
			err = rpcErrorf(hostrpc.CodeTooLarge, "reply of %d bytes exceeds the %d-byte NATS max payload", len(msg.Data), a.maxPayload())
		}
	}
	if err != nil {
		var re *hostrpc.Error
		if !errors.As(err, &re) {
			re = &hostrpc.Error{Code: hostrpc.CodeInternal, Message: err.Error()}
			a.logger.Error("rpc: internal error", "op", c.op, "correlation", c.correlation, "err", err)
		}
		msg.Data, _ = json.Marshal(re)
		msg.Header.Set(micro.ErrorCodeHeader, re.Code)
		msg.Header.Set(micro.ErrorHeader, re.Message)
	}
	a.metrics.answered(c, err)
	if err := a.nc.PublishMsg(msg); err != nil {
		a.logger.Warn("rpc: respond", "op", c.op, "err", err)
	}
}

// maxPayload is the largest message the NATS server takes.
func (a *Agent) maxPayload() int { return int(a.nc.MaxPayload()) }

// decode parses a request body into v, checks its environment id and then the rest of it with
// check, a check of the Limits a router checked it against (it fills the defaults); check is nil
// when the rest depends on the environment.
func decode[T any](c *rpcCall, v *T, env func() string, check func(*T) error) error {
	if err := json.Unmarshal(c.data, v); err != nil {
		return rpcErrorf(hostrpc.CodeBadRequest, "%s: invalid request: %v", c.op, err)
	}
	if err := events.ValidID(env()); err != nil {
		return rpcErrorf(hostrpc.CodeBadRequest, "%s: environment: %v", c.op, err)
	}
	if check == nil {
		return nil
	}
	return check(v)
}

// target is a running environment a call works on.
type target struct {
	e       *envEntry
	m       Machine
	runtime string
}

// running finds env's VM if env runs on this host, or a not_found / not_running error; a paused
// environment is resumed first. An environment the cluster declared lost is refused even
// before the consumer fenced it: the host may have been paused or cut off while the others
// gave it up.
func (a *Agent) running(ctx context.Context, env string) (target, error) {
	t, state, err := a.servingTarget(ctx, env)
	if err != nil || state != events.StatePaused {
		return t, err
	}
	if _, err := a.resume(ctx, env, a.principal, "", true); err != nil {
		return target{}, err
	}
	t, state, err = a.servingTarget(ctx, env)
	if err == nil && state != "" {
		err = rpcErrorf(hostrpc.CodeNotRunning, "environment %s is %s, not running", env, state)
	}
	return t, err
}

// servingTarget is running without the resume: a serving environment's target, or the state
// of a paused one (with no error), or an error.
func (a *Agent) servingTarget(ctx context.Context, env string) (target, string, error) {
	a.mu.Lock()
	e := a.envs[env]
	if e != nil && e.serving {
		t := target{e: e, m: e.machine, runtime: e.runtime}
		a.mu.Unlock()
		lost, err := a.declaredLost(ctx, env)
		if err != nil {
			return target{}, "", err
		}
		if lost {
			a.goTask(func() {
				if err := a.fenceEnv(context.WithoutCancel(ctx), env); err != nil {
					a.logger.Error("fencing", "env", env, "err", err)
				}
			})
			return target{}, "", errFenced(env)
		}
		return t, "", nil
	}
	a.mu.Unlock()
	g := aggregate{host: a.cfg.HostID, env: env}
	if err := g.load(ctx, a.log); err != nil {
		return target{}, "", err
	}
	switch g.State {
	case events.StateNone:
		return target{}, "", rpcErrorf(hostrpc.CodeNotFound, "environment %s not found on host %s", env, a.cfg.HostID)
	case events.StatePaused:
		return target{}, g.State, nil
	case events.StateRunning: // and not serving: a pause or resume holds it
		return target{}, "", rpcErrorf(hostrpc.CodeBusy, "environment %s is being paused or resumed; try again in a moment", env)
	}
	return target{}, "", rpcErrorf(hostrpc.CodeNotRunning, "environment %s is %s, not running", env, g.State)
}

// audit appends an audit event for a call and counts the call as activity.
func (a *Agent) audit(ctx context.Context, t target, c *rpcCall, typ string, data any) {
	a.markActive(t.e, time.Now(), true)
	if typ == "" {
		return
	}
	e := a.lockEntry(t.e.id)
	ok, err := e.agg.appendEvent(ctx, a.log, typ, c.principal, c.correlation, data)
	a.unlockEntry(e)
	switch {
	case err != nil:
		a.logger.Error("rpc: audit event not appended", "env", t.e.id, "type", typ, "err", err)
	case !ok:
		a.logger.Info("rpc: environment left running during the call; audit event skipped", "env", t.e.id, "type", typ)
	}
}

// machineError maps a guest error to a reply error.
func machineError(op, p string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return rpcErrorf(hostrpc.CodeNotFound, "%s %s: no such file or directory", op, p)
	case errors.Is(err, ErrTooLarge):
		return rpcErrorf(hostrpc.CodeTooLarge, "%s %s: %v", op, p, err)
	case errors.Is(err, ErrInvalidPath):
		return rpcErrorf(hostrpc.CodeBadRequest, "%s %s: %v", op, p, err)
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}

// execCommand is how code of a language runs, in one spawn: python and node read the whole
// program from stdin before they start (so that the working directory is their first import
// path, as for a script there); bash, which would read its stdin as it goes, gets the code as
// a program the guest saves to a file.
func execCommand(language, code string) (ExecSpec, error) {
	switch language {
	case "python":
		// Unbuffered (-u), so that streamed output arrives as it is printed.
		return ExecSpec{Argv: []string{PythonPath, "-u", "-"}, Stdin: []byte(code)}, nil
	case "node":
		return ExecSpec{Argv: []string{"node", "-"}, Stdin: []byte(code), Env: map[string]string{"NODE_PATH": NpmPrefix + "/lib/node_modules"}}, nil
	case "shell":
		return ExecSpec{Argv: []string{"bash"}, Program: []byte(code)}, nil
	}
	return ExecSpec{}, rpcErrorf(hostrpc.CodeBadRequest, "unknown language %q: use one of python, node, shell", language)
}

// codeRun is a command ready to run in an environment, with what its audit event records.
type codeRun struct {
	t        target
	spec     ExecSpec
	lang     string // language, or install:<runtime>
	codeSHA  string
	codeSize int
	packages []string // install_packages: the specs asked for
}

// prepareCode builds the command that runs code (checked by the Limits) in env in language
// (default: the environment's runtime); execute and process_start run code the same way.
func (a *Agent) prepareCode(ctx context.Context, env, code, language string) (codeRun, error) {
	t, err := a.running(ctx, env)
	if err != nil {
		return codeRun{}, err
	}
	lang := language
	if lang == "" {
		lang = t.runtime
	}
	spec, err := execCommand(lang, code)
	if err != nil {
		return codeRun{}, err
	}
	return codeRun{t: t, spec: spec, lang: lang, codeSHA: events.Hash([]byte(code)), codeSize: len(code)}, nil
}

func (a *Agent) rpcExec(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.ExecRequest
	if err := decode(c, &req, func() string { return req.Env }, a.cfg.Limits.CheckExec); err != nil {
		return nil, err
	}
	r, err := a.prepareCode(ctx, req.Env, req.Code, req.Language)
	if err != nil {
		return nil, err
	}
	out, _, err := a.run(ctx, c, r, req.Timeout)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (a *Agent) rpcInstall(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.InstallRequest
	// The package rule depends on the environment's runtime: checked once it is known.
	if err := decode(c, &req, func() string { return req.Env }, nil); err != nil {
		return nil, err
	}
	t, err := a.running(ctx, req.Env)
	if err != nil {
		return nil, err
	}
	if err := a.cfg.Limits.CheckInstall(t.runtime, &req); err != nil {
		return nil, err
	}
	argv, err := installCommand(t.runtime, req.Packages)
	if err != nil {
		return nil, rpcErrorf(hostrpc.CodeBadRequest, "%v", err)
	}
	spec := ExecSpec{Argv: argv}
	if t.runtime == "shell" {
		spec.Stdin = a.cfg.AptKeys // see wire.AptInstallCommand
	}
	cmd := strings.Join(argv, " ")
	timeout := req.Timeout // CheckInstall filled the default
	out, fetches, err := a.run(ctx, c, codeRun{t: t, spec: spec, lang: "install:" + t.runtime,
		codeSHA: events.Hash([]byte(cmd)), codeSize: len(cmd), packages: req.Packages}, timeout)
	switch {
	case err != nil:
		return nil, err
	case out.TimedOut:
		return nil, rpcErrorf(hostrpc.CodeFailed, "%s timed out after %s%s%s", installer(t.runtime), timeout,
			managerMessage(out), proxyFailures(fetches.Failures))
	case out.ExitCode != 0:
		return nil, rpcErrorf(hostrpc.CodeFailed, "%s failed (exit status %d)%s%s", installer(t.runtime), out.ExitCode,
			managerMessage(out), proxyFailures(fetches.Failures))
	}
	files := fetches.Files
	if files == nil {
		files = []events.PackageFile{}
	}
	return hostrpc.InstallResult{ExecResult: out, Fetched: files}, nil
}

// maxProxyFailures bounds the upstream failures an install error names.
const maxProxyFailures = 3

// proxyFailures tells what the package proxy's upstreams failed to answer during an install,
// as the tail of its error message: package managers often take an index they could not fetch
// for a package that does not exist.
func proxyFailures(failures []string) string {
	if len(failures) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nmeanwhile the host's package proxy could not fetch from its upstream:")
	for _, f := range failures[:min(len(failures), maxProxyFailures)] {
		b.WriteString("\n  " + f)
	}
	if n := len(failures) - maxProxyFailures; n > 0 {
		fmt.Fprintf(&b, "\n  (and %d more)", n)
	}
	return b.String()
}

// maxManagerMessage bounds the package manager's output an install error carries.
const maxManagerMessage = 4000

// managerMessage is the end of what a failed package manager said (its stderr, or its stdout
// if it wrote nothing there), as the tail of an error message.
func managerMessage(out hostrpc.ExecResult) string {
	msg := strings.TrimSpace(out.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(out.Stdout)
	}
	if msg == "" {
		return ""
	}
	if len(msg) > maxManagerMessage {
		msg = msg[len(msg)-maxManagerMessage:]
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		msg = "...\n" + msg
	}
	return ":\n" + msg
}

// outputCap is the per-stream output cap: two streams must fit in one reply.
func (a *Agent) outputCap() int {
	return min(a.cfg.Limits.MaxOutputBytes, (a.maxPayload()-replyOverhead)/2)
}

// execute runs spec in t's guest with the timeout and the output cap. It also returns what
// the guest fetched through the package proxy meanwhile.
func (a *Agent) execute(ctx context.Context, t target, spec ExecSpec, timeout time.Duration) (ExecResult, pkgproxy.Fetches, error) {
	spec.Timeout = timeout
	spec.MaxOutput = a.outputCap()
	// The guest enforces the timeout (and kills the process group); the margin covers SSH.
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	rec := a.packages.Record(t.m.ID())
	res, err := t.m.Exec(ctx, spec)
	return res, rec.Stop(), err
}

// auditExec appends the exec audit event of a command: finished (res, what the guest fetched
// through the package proxy meanwhile, and runErr when it has no normal outcome), or for phase
// ExecStarted a background process just started. The event is appended whatever happened to
// the environment meanwhile.
func (a *Agent) auditExec(ctx context.Context, r codeRun, c *rpcCall, res ExecResult, fetched pkgproxy.Fetches, runErr error, phase string) {
	d := events.Exec{Language: r.lang, CodeSHA256: r.codeSHA, CodeSize: r.codeSize,
		ExitCode: res.ExitCode, DurationMS: res.Duration.Milliseconds(), StdoutBytes: len(res.Stdout),
		StderrBytes: len(res.Stderr), TimedOut: res.TimedOut, Truncated: res.Truncated, Background: phase != "", Phase: phase,
		Packages: r.packages, Fetched: fetched.Files}
	if runErr != nil {
		d.ExitCode, d.Error = -1, runErr.Error()
	}
	// The call's own context may be over (the caller gave up); its record is still due.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fileOpTimeout)
	defer cancel()
	a.audit(actx, r.t, c, events.EnvExec, d)
}

// run executes r, audits it as an exec event (also when it fails) and shapes the reply to fit
// one NATS message (output beyond the caps is cut and flagged truncated). It also returns what
// the guest fetched through the package proxy.
func (a *Agent) run(ctx context.Context, c *rpcCall, r codeRun, timeout time.Duration) (hostrpc.ExecResult, pkgproxy.Fetches, error) {
	start := time.Now()
	r.spec.Stdout, r.spec.Stderr = c.stream.writers()
	res, fetched, err := a.execute(ctx, r.t, r.spec, timeout)
	if err != nil {
		res.Duration = time.Since(start)
		a.auditExec(ctx, r, c, res, fetched, err, "")
		return hostrpc.ExecResult{}, pkgproxy.Fetches{}, fmt.Errorf("%s in environment %s: %w", c.op, r.t.e.id, err)
	}
	a.metrics.guestExec.Observe(res.Duration.Seconds())
	a.auditExec(ctx, r, c, res, fetched, nil, "")
	out := hostrpc.ExecResult{Stdout: string(res.Stdout), Stderr: string(res.Stderr), ExitCode: res.ExitCode,
		DurationMS: res.Duration.Milliseconds(), TimedOut: res.TimedOut, Truncated: res.Truncated,
		Timing: &hostrpc.Timing{HostMS: hostrpc.Millis(time.Since(c.arrived)), GuestMS: hostrpc.Millis(res.Duration)}}
	fitReply(&out, a.maxPayload()-replyOverhead)
	return out, fetched, nil
}

// fitReply cuts the output of out until its JSON takes at most limit bytes: JSON escaping can
// grow binary output up to six times.
func fitReply(out *hostrpc.ExecResult, limit int) {
	for {
		body, err := json.Marshal(out)
		if err != nil || len(body) <= limit {
			return
		}
		out.Stdout, out.Stderr, out.Truncated = out.Stdout[:len(out.Stdout)/2], out.Stderr[:len(out.Stderr)/2], true
	}
}

func (a *Agent) rpcWriteFile(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.WriteFileRequest
	if err := decode(c, &req, func() string { return req.Env }, a.cfg.Limits.CheckWriteFile); err != nil {
		return nil, err
	}
	t, err := a.running(ctx, req.Env)
	if err != nil {
		return nil, err
	}
	p := req.Path
	mode := req.Mode
	if mode == 0 {
		mode = 0o644
	}
	ctx, cancel := context.WithTimeout(ctx, fileOpTimeout)
	defer cancel()
	content := req.Content
	if req.ContentRef != "" {
		if content, err = a.takeTransfer(ctx, c, req.ContentRef); err != nil {
			return nil, err
		}
	}
	if err := a.cfg.Limits.CheckFileSize(len(content)); err != nil {
		return nil, err
	}
	if err := t.m.WriteFile(ctx, p, content, mode); err != nil {
		return nil, machineError("write", p, err)
	}
	digest := events.Hash(content)
	a.audit(ctx, t, c, events.EnvFileWritten, events.File{Path: p, Size: int64(len(content)), SHA256: digest})
	return hostrpc.WriteFileResult{Path: p, BytesWritten: int64(len(content)), SHA256: digest}, nil
}

// takeTransfer reads the transfer object of a write (at most MaxFileBytes) and deletes it.
func (a *Agent) takeTransfer(ctx context.Context, c *rpcCall, ref string) ([]byte, error) {
	limit := a.cfg.Limits.MaxFileBytes
	data, err := a.transfers.Get(ctx, ref, int64(limit))
	if !errors.Is(err, hostrpc.ErrInvalidRef) && !errors.Is(err, hostrpc.ErrTransferNotFound) {
		if derr := a.transfers.Delete(ctx, ref); derr != nil {
			a.logger.Warn("rpc: transfer object not deleted; it expires", "op", c.op, "correlation", c.correlation, "err", derr)
		}
	}
	switch {
	case errors.Is(err, hostrpc.ErrTransferTooLarge):
		return nil, rpcErrorf(hostrpc.CodeTooLarge, "write_file: content is larger than %d bytes, the limit per file", limit)
	case errors.Is(err, hostrpc.ErrInvalidRef), errors.Is(err, hostrpc.ErrTransferNotFound):
		return nil, rpcErrorf(hostrpc.CodeBadRequest, "write_file: %v", err)
	case err != nil:
		return nil, fmt.Errorf("write_file: %w", err)
	}
	return data, nil
}

func (a *Agent) rpcReadFile(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.ReadFileRequest
	if err := decode(c, &req, func() string { return req.Env }, a.cfg.Limits.CheckReadFile); err != nil {
		return nil, err
	}
	t, err := a.running(ctx, req.Env)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fileOpTimeout)
	defer cancel()
	p, limit := req.Path, req.Max
	data, err := t.m.ReadFile(ctx, p, limit)
	if errors.Is(err, ErrTooLarge) {
		return nil, rpcErrorf(hostrpc.CodeTooLarge, "read %s: file is larger than %d bytes, the limit per file", p, limit)
	}
	if err != nil {
		return nil, machineError("read", p, err)
	}
	res := hostrpc.ReadFileResult{Path: p, Size: int64(len(data))}
	if hostrpc.Inline(len(data), a.nc.MaxPayload()) {
		res.Content = data
	} else if res.ContentRef, err = a.transfers.Put(ctx, data); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	a.audit(ctx, t, c, events.EnvFileRead, events.File{Path: p, Size: int64(len(data)), SHA256: events.Hash(data)})
	return res, nil
}

func (a *Agent) rpcListFiles(ctx context.Context, c *rpcCall) (any, error) {
	var req hostrpc.ListFilesRequest
	if err := decode(c, &req, func() string { return req.Env }, a.cfg.Limits.CheckListFiles); err != nil {
		return nil, err
	}
	t, err := a.running(ctx, req.Env)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fileOpTimeout)
	defer cancel()
	p := req.Path
	files, err := t.m.ListFiles(ctx, p, req.Recursive, a.cfg.Limits.MaxListEntries)
	if err != nil {
		return nil, machineError("list", p, err)
	}
	a.audit(ctx, t, c, "", nil)
	return hostrpc.ListFilesResult{Path: p, Files: files, Count: len(files)}, nil
}
