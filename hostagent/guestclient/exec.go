// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guestclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// DefaultMaxOutput is the per-stream output cap of Exec when ExecRequest.MaxOutput is 0.
const DefaultMaxOutput = 1 << 20

// killWait bounds how long Exec waits for the guest to confirm a killed session before it gives
// up on the guest.
const killWait = 10 * time.Second

// ExecRequest describes one command. Exactly one of Argv and Command must be set.
type ExecRequest struct {
	// Argv is executed directly: argv[0] is looked up in the guest's PATH, no shell is involved.
	Argv []string
	// Program, if not nil, is the source of a program for the interpreter Argv (such as
	// ["bash"]): the guest saves it to a file of its own and runs Argv with the file's path as
	// the last argument, in one spawn, with an empty stdin (see wire.EncodeProgram). Stdin must
	// then be nil.
	Program []byte
	// Command is a shell command line, run as `/bin/sh -c Command`.
	Command string
	// Stdin is the command's standard input; the command sees end of file after it.
	Stdin []byte
	// Env holds extra environment variables; the guest accepts only allow-listed names (LANG,
	// LC_*, TZ, TERM, PYTHON*, PIP_*, NODE_*, NPM_CONFIG_*, ...) and Exec fails with ErrInvalid
	// for others.
	Env map[string]string
	// Dir is the working directory: empty means the sandbox user's home, a relative path is
	// relative to it.
	Dir string
	// Timeout, if positive, kills the command's process group after this long; the result then
	// has TimedOut set and holds the output produced until then.
	Timeout time.Duration
	// MaxOutput caps each of stdout and stderr, in bytes. Output beyond it is read and discarded
	// and the result has Truncated set. 0 means DefaultMaxOutput; negative means no cap.
	MaxOutput int
	// Stdout and Stderr, if set, receive each stream's output as it arrives (the part within
	// MaxOutput), in addition to the result. They must not block for long.
	Stdout, Stderr io.Writer
}

// ExecResult is the outcome of a command.
type ExecResult struct {
	Stdout, Stderr []byte
	// ExitCode is the command's exit status, 128+N if signal N killed it, or -1 if it timed out.
	ExitCode int
	// Signal is the name of the signal that killed the command ("KILL", "SEGV", ...), if any.
	Signal string
	// TimedOut is set when Timeout expired and the command was killed.
	TimedOut bool
	// Truncated is set when stdout or stderr exceeded MaxOutput.
	Truncated bool
	// StdoutBytes and StderrBytes count all bytes the command wrote, kept or not.
	StdoutBytes, StderrBytes int64
	// Duration is the time from starting the command to its end.
	Duration time.Duration
}

// Exec runs a command in the guest as the sandbox user and waits for it. A non-zero exit status is
// not an error. If ctx ends first the command's process group is killed and Exec returns the
// partial result with ctx's error.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	payload, stdin, err := execPayload(req)
	if err != nil {
		return ExecResult{}, err
	}
	limit := req.MaxOutput
	if limit == 0 {
		limit = DefaultMaxOutput
	}
	stdout, stderr := &capBuffer{max: limit, tee: req.Stdout}, &capBuffer{max: limit, tee: req.Stderr}
	start := time.Now()
	// Opening a session and starting the command wait for the guest's replies; a guest that
	// does not answer must not outlive ctx.
	sess, err := do(ctx, func() (*ssh.Session, error) { return c.start(req, payload, stdin, stdout, stderr) },
		func() {}, killSession)
	if err != nil {
		return ExecResult{ExitCode: -1}, fmt.Errorf("exec: %w", err)
	}
	defer sess.Close()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var waitErr, ctxErr error
	timedOut := false
	select {
	case waitErr = <-done:
	case <-timeout:
		timedOut = true
		waitErr = kill(sess, done)
	case <-ctx.Done():
		ctxErr = context.Cause(ctx)
		waitErr = kill(sess, done)
	}
	res := ExecResult{Duration: time.Since(start), TimedOut: timedOut}
	res.Stdout, res.StdoutBytes = stdout.result()
	res.Stderr, res.StderrBytes = stderr.result()
	res.Truncated = stdout.truncated() || stderr.truncated()

	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.Is(waitErr, errUnresponsive):
		res.ExitCode = -1
		return res, fmt.Errorf("exec: %w", waitErr)
	case timedOut || ctxErr != nil:
		res.ExitCode = -1
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		res.ExitCode, res.Signal = exitErr.ExitStatus(), exitErr.Signal()
	case errors.As(waitErr, &missing):
		return res, fmt.Errorf("exec: guest closed the session without an exit status: %w", ErrClosed)
	default:
		return res, fmt.Errorf("exec: %w: %w", ErrClosed, waitErr)
	}
	if ctxErr != nil {
		return res, fmt.Errorf("exec: %w", ctxErr)
	}
	return res, nil
}

// start opens a session, sets its environment and starts the command with stdin (nil: none).
func (c *Client) start(req ExecRequest, payload string, stdin []byte, stdout, stderr io.Writer) (*ssh.Session, error) {
	sess, err := c.ssh.NewSession()
	var refused *ssh.OpenChannelError
	switch {
	case errors.As(err, &refused) && refused.Reason == ssh.ResourceShortage:
		return nil, fmt.Errorf("open session: %w", ErrBusy)
	case err != nil:
		return nil, fmt.Errorf("open session: %w: %w", ErrClosed, err)
	}
	if err := setenv(sess, req); err != nil {
		sess.Close()
		return nil, err
	}
	sess.Stdout, sess.Stderr = stdout, stderr
	if stdin != nil {
		sess.Stdin = bytes.NewReader(stdin)
	}
	if err := sess.Start(payload); err != nil {
		sess.Close()
		return nil, fmt.Errorf("start: %w", err)
	}
	return sess, nil
}

// execPayload encodes the command of req as an exec request payload, and returns what the
// session's stdin carries: req.Stdin, or a program's source that is not in the payload.
func execPayload(req ExecRequest) (payload string, stdin []byte, err error) {
	switch {
	case len(req.Argv) > 0 && req.Command != "":
		return "", nil, fmt.Errorf("exec: %w: both Argv and Command set", ErrInvalid)
	case req.Program != nil && (req.Stdin != nil || len(req.Argv) == 0):
		return "", nil, fmt.Errorf("exec: %w: a program needs an interpreter in Argv and no Stdin", ErrInvalid)
	case len(req.Program) > wire.MaxProgramBytes:
		return "", nil, fmt.Errorf("exec: %w: a program of %d bytes, more than %d", ErrInvalid, len(req.Program), wire.MaxProgramBytes)
	case req.Program != nil:
		p, inline, err := wire.EncodeProgram(req.Argv, req.Program)
		if err != nil {
			return "", nil, fmt.Errorf("exec: %w: %w", ErrInvalid, err)
		}
		if inline {
			return p, nil, nil
		}
		return p, req.Program, nil
	case len(req.Argv) > 0:
		p, err := wire.EncodeArgv(req.Argv)
		if err != nil {
			return "", nil, fmt.Errorf("exec: %w: %w", ErrInvalid, err)
		}
		return p, req.Stdin, nil
	case req.Command != "":
		return req.Command, req.Stdin, nil
	}
	return "", nil, fmt.Errorf("exec: %w: no command", ErrInvalid)
}

func setenv(sess *ssh.Session, req ExecRequest) error {
	names := make([]string, 0, len(req.Env))
	for k := range req.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if k == wire.DirEnv {
			return fmt.Errorf("%w: %s is reserved, use Dir", ErrInvalid, k)
		}
		if err := sess.Setenv(k, req.Env[k]); err != nil {
			return fmt.Errorf("%w: environment variable %q refused by the guest", ErrInvalid, k)
		}
	}
	if req.Dir != "" {
		if err := sess.Setenv(wire.DirEnv, req.Dir); err != nil {
			return fmt.Errorf("set working directory: %w", err)
		}
	}
	return nil
}

// killSession kills the session's process group in the guest and closes the session; a session
// already gone has nothing left to kill.
func killSession(sess *ssh.Session) {
	_ = sess.Signal(ssh.SIGKILL)
	sess.Close()
}

// errUnresponsive reports a guest that did not confirm the end of a killed session.
var errUnresponsive = fmt.Errorf("%w: the guest did not end a killed session within %s", ErrClosed, killWait)

// kill kills the session's process group in the guest, closes the session, and waits (bounded)
// for the session to end.
func kill(sess *ssh.Session, done <-chan error) error {
	killSession(sess)
	select {
	case err := <-done:
		return err
	case <-time.After(killWait):
		return errUnresponsive
	}
}

// capBuffer keeps the first max bytes written to it (all if max < 0), passes them on to tee (if
// set) and counts the rest. It has no ReadFrom method on purpose: each stream gets its own buffer
// and its own copy loop.
type capBuffer struct {
	mu    sync.Mutex
	max   int
	tee   io.Writer
	buf   []byte
	total int64
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(len(p))
	keep := p
	if b.max >= 0 {
		keep = p[:min(len(p), max(b.max-len(b.buf), 0))]
	}
	b.buf = append(b.buf, keep...)
	if b.tee != nil && len(keep) > 0 {
		// A failing tee must not break the command: its output is still in the result.
		_, _ = b.tee.Write(keep)
	}
	return len(p), nil
}

func (b *capBuffer) result() ([]byte, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf), b.total
}

func (b *capBuffer) truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.buf)) < b.total
}
