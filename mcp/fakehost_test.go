// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// hostMode is how a fake host answers placements.
type hostMode int

const (
	hostStarts  hostMode = iota // starting, then started
	hostRejects                 // rejected (no room)
	hostFails                   // starting, then failed
	hostSilent                  // never answers
)

// fakeHost plays a host agent: it joins, answers placements on its subject per its mode,
// carries out destroy requests, and serves the host RPC with canned results and an in-memory
// file system.
type fakeHost struct {
	id   string
	mode hostMode
	log  *events.Log
	nc   *nats.Conn

	mu      sync.Mutex
	running map[string]bool              // env -> running
	files   map[string]map[string][]byte // env -> path -> content
	calls   []nats.Header                // headers of every RPC
}

func startFakeHost(t testing.TB, ctx context.Context, log *events.Log, nc *nats.Conn, id string, mode hostMode) *fakeHost {
	t.Helper()
	h := &fakeHost{id: id, mode: mode, log: log, nc: nc, running: map[string]bool{}, files: map[string]map[string][]byte{}}
	head, err := log.Head(ctx, events.HostAggregate(id))
	if err != nil {
		t.Fatal(err)
	}
	joined, err := events.NewHostEvent(id, events.HostJoined, "host:"+id,
		events.HostInfo{Address: "127.0.0.1:0", CPUs: 8, MemoryMiB: 16384, MaxEnvironments: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(ctx, joined, head); err != nil {
		t.Fatal(err)
	}
	svc, err := micro.AddService(nc, micro.Config{Name: "fake-hostagent", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	group := svc.AddGroup("waggle.rpc." + id)
	for op, fn := range map[string]func(env string, data []byte) (any, error){
		hostrpc.OpExec: h.exec, hostrpc.OpInstallPackages: h.install, hostrpc.OpWriteFile: h.writeFile,
		hostrpc.OpReadFile: h.readFile, hostrpc.OpListFiles: h.listFiles,
	} {
		err := group.AddEndpoint(op, micro.HandlerFunc(func(req micro.Request) {
			h.mu.Lock()
			h.calls = append(h.calls, nats.Header(req.Headers()))
			h.mu.Unlock()
			var env struct{ Env string }
			_ = json.Unmarshal(req.Data(), &env)
			out, err := h.check(env.Env)
			var chunks uint64
			if err == nil {
				if stream := req.Headers().Get(hostrpc.HeaderStream); stream != "" && op == hostrpc.OpExec {
					chunks = h.stream(stream, req.Data())
				}
				out, err = fn(env.Env, req.Data())
			}
			var he *rpcErr
			if errors.As(err, &he) {
				body, _ := json.Marshal(he.body)
				_ = req.Error(he.body.Code, he.body.Message, body)
				return
			}
			_ = req.RespondJSON(out, micro.WithHeaders(micro.Headers{hostrpc.HeaderStreamChunks: {strconv.FormatUint(chunks, 10)}}))
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = log.Follow(fctx, events.Position{}, []string{events.HostEnvs(id)}, h.onEvent)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// rpcErr is an error reply of the fake host.
type rpcErr struct{ body hostrpc.Error }

func (e *rpcErr) Error() string { return e.body.Code + ": " + e.body.Message }

func hostErr(code, format string, a ...any) error {
	return &rpcErr{body: hostrpc.Error{Code: code, Message: fmt.Sprintf(format, a...)}}
}

// onEvent answers the lifecycle events of this host's environments.
func (h *fakeHost) onEvent(ev *events.Event) error {
	ctx := context.Background()
	head := events.Head{Seq: ev.Seq, Hash: events.Hash(ev.Raw)}
	appendNext := func(typ string, data any) error {
		next, err := events.NewEnvEvent(h.id, ev.Env, typ, "host:"+h.id, data)
		if err != nil {
			return err
		}
		next.Causation, next.Correlation = ev.ID, ev.Correlation
		head, err = h.log.Append(ctx, next, head)
		return err
	}
	switch ev.Type {
	case events.EnvPlaced:
		switch h.mode {
		case hostRejects:
			return appendNext(events.EnvRejected, events.Reason{Reason: "no room: 0 MiB free"})
		case hostSilent:
			return nil
		}
		if err := appendNext(events.EnvStarting, nil); err != nil {
			return err
		}
		if h.mode == hostFails {
			return appendNext(events.EnvFailed, events.Reason{Reason: "image python not found on host"})
		}
		h.mu.Lock()
		h.running[ev.Env] = true
		h.files[ev.Env] = map[string][]byte{}
		h.mu.Unlock()
		return appendNext(events.EnvStarted, events.Started{BootMillis: 7})
	case events.EnvDestroyRequested:
		h.mu.Lock()
		delete(h.running, ev.Env)
		h.mu.Unlock()
		return appendNext(events.EnvDestroyed, nil)
	}
	return nil
}

func (h *fakeHost) check(env string) (any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running[env] {
		return nil, nil
	}
	if _, known := h.files[env]; known {
		return nil, hostErr(hostrpc.CodeNotRunning, "environment %s is destroying, not running", env)
	}
	return nil, hostErr(hostrpc.CodeNotFound, "environment %s not found on host %s", env, h.id)
}

func (h *fakeHost) exec(_ string, data []byte) (any, error) {
	var req hostrpc.ExecRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, hostErr(hostrpc.CodeBadRequest, "bad request: %v", err)
	}
	res := hostrpc.ExecResult{DurationMS: 3}
	switch {
	case req.Code == "crash":
		return nil, hostErr(hostrpc.CodeInternal, "disk on fire")
	case strings.Contains(req.Code, "6*7"), req.Code == "echo 42":
		res.Stdout = "42\n"
	case strings.Contains(req.Code, "exit(3)"):
		res.Stderr, res.ExitCode = "boom\n", 3
	case strings.HasPrefix(req.Code, "stream\n"):
		for _, c := range streamed(req.Code) {
			if c.Stream == hostrpc.Stdout {
				res.Stdout += string(c.Data)
			} else {
				res.Stderr += string(c.Data)
			}
		}
	case strings.Contains(req.Code, "sleep"):
		res.ExitCode, res.TimedOut, res.DurationMS = -1, true, req.Timeout.Milliseconds()
	default:
		res.Stdout = req.Language + ":" + req.Code
	}
	return res, nil
}

// streamed is the output of code "stream" followed by lines "1>text" (stdout) and "2>text"
// (stderr): the chunks a real host would stream, one line each.
func streamed(code string) []hostrpc.Chunk {
	rest, ok := strings.CutPrefix(code, "stream\n")
	if !ok {
		return nil
	}
	var out []hostrpc.Chunk
	for line := range strings.Lines(rest) {
		fd := hostrpc.Stdout
		if strings.HasPrefix(line, "2>") {
			fd = hostrpc.Stderr
		}
		out = append(out, hostrpc.Chunk{Seq: uint64(len(out) + 1), Stream: fd, Data: []byte(line[2:])})
	}
	return out
}

// stream publishes the output of an exec of streamed code on the stream the router asked for,
// 100 ms apart, as it would come from a command printing a line now and then, and returns the
// number of chunks.
func (h *fakeHost) stream(id string, data []byte) uint64 {
	var req hostrpc.ExecRequest
	_ = json.Unmarshal(data, &req)
	chunks := streamed(req.Code)
	for i, c := range chunks {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		_ = h.nc.PublishMsg(c.Msg(hostrpc.StreamSubject(h.id, id)))
	}
	return uint64(len(chunks))
}

func (h *fakeHost) install(_ string, data []byte) (any, error) {
	var req hostrpc.InstallRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, hostErr(hostrpc.CodeBadRequest, "bad request: %v", err)
	}
	if slices.Contains(req.Packages, "no-such-package") {
		return nil, hostErr(hostrpc.CodeFailed, "pip install failed (exit status 1):\nERROR: No matching distribution found for no-such-package")
	}
	return hostrpc.InstallResult{ExecResult: hostrpc.ExecResult{Stdout: "installed " + strings.Join(req.Packages, ",") + "\n"}}, nil
}

func (h *fakeHost) writeFile(env string, data []byte) (any, error) {
	var req hostrpc.WriteFileRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, hostErr(hostrpc.CodeBadRequest, "bad request: %v", err)
	}
	h.mu.Lock()
	h.files[env][req.Path] = req.Content
	h.mu.Unlock()
	return hostrpc.WriteFileResult{Path: req.Path, BytesWritten: int64(len(req.Content))}, nil
}

func (h *fakeHost) readFile(env string, data []byte) (any, error) {
	var req hostrpc.ReadFileRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, hostErr(hostrpc.CodeBadRequest, "bad request: %v", err)
	}
	h.mu.Lock()
	content, ok := h.files[env][req.Path]
	h.mu.Unlock()
	if !ok {
		return nil, hostErr(hostrpc.CodeNotFound, "no such file: %s", req.Path)
	}
	return hostrpc.ReadFileResult{Path: req.Path, Content: content, Size: int64(len(content))}, nil
}

func (h *fakeHost) listFiles(env string, data []byte) (any, error) {
	var req hostrpc.ListFilesRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, hostErr(hostrpc.CodeBadRequest, "bad request: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	res := hostrpc.ListFilesResult{Path: req.Path}
	for p, c := range h.files[env] {
		if rest, ok := strings.CutPrefix(p, strings.TrimSuffix(req.Path, "/")+"/"); ok {
			res.Files = append(res.Files, hostrpc.FileInfo{Name: rest, Size: int64(len(c)), Mode: "-rw-r--r--", Modified: time.Now().UTC()})
		}
	}
	res.Count = len(res.Files)
	return res, nil
}

// headers returns the headers of every RPC the host served.
func (h *fakeHost) headers() []nats.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]nats.Header(nil), h.calls...)
}
