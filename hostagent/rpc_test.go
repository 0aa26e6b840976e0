// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

func TestRPC(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.Limits.MaxCodeBytes = 64
	cfg.Limits.MaxFileBytes = 1000
	cfg.AptKeys = []byte("KEYS")
	runAgent(t, c, cfg, fm)
	py, node, sh, pending := newEnvID(), newEnvID(), newEnvID(), newEnvID()
	place(t, c, "h1", py, events.Requested{Runtime: "python"})
	place(t, c, "h1", node, events.Requested{Runtime: "node"})
	place(t, c, "h1", sh, events.Requested{Runtime: "shell"})
	for _, env := range []string{py, node, sh} {
		waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	}
	appendEnv(t, c, "h1", pending, mustEvent(t, "h1", pending, events.EnvRequested, events.Requested{Runtime: "python"}))
	fm.vms[py].files["/home/sandbox/big.bin"] = make([]byte, cfg.Limits.MaxFileBytes+1)

	runRPCCases(t, c.NC, "h1", []rpcCase{
		{name: "exec python", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: py, Code: "exit 3"},
			check: wantExec(3, "exit 3", PythonPath+" -u -")},
		{name: "exec node by language", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: py, Code: "1", Language: "node"},
			check: wantExec(0, "1", "node -")},
		{name: "exec shell", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: sh, Code: "echo hi"}, check: wantExec(0, "echo hi", "bash")},
		{name: "code too large", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: py, Code: strings.Repeat("x", 65)},
			wantCode: hostrpc.CodeTooLarge, wantMsg: "limit is 64"},
		{name: "unknown language", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: py, Code: "1", Language: "cobol"},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "unknown language"},
		{name: "not found", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: "nope", Code: "1"},
			wantCode: hostrpc.CodeNotFound, wantMsg: "environment nope not found on host h1"},
		{name: "not running", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: pending, Code: "1"},
			wantCode: hostrpc.CodeNotRunning, wantMsg: "is requested, not running"},
		{name: "bad env id", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: "../x", Code: "1"}, wantCode: hostrpc.CodeBadRequest},
		{name: "write relative refused", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: py, Path: "a/b.txt", Content: []byte("hello")},
			wantCode: hostrpc.CodeBadRequest, wantMsg: `path "a/b.txt" is not absolute: start it with /, e.g. /home/sandbox/a/b.txt`},
		{name: "write cleaned", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: py, Path: "/home/sandbox/x/../a//b.txt", Content: []byte("hello")},
			check: func(t *testing.T, reply []byte) {
				if !strings.Contains(string(reply), `"path":"/home/sandbox/a/b.txt"`) || !strings.Contains(string(reply), `"bytes_written":5`) {
					t.Fatalf("reply %s", reply)
				}
			}},
		{name: "read back", op: hostrpc.OpReadFile, req: hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/a/b.txt"},
			check: func(t *testing.T, reply []byte) {
				if !strings.Contains(string(reply), `"content":"aGVsbG8="`) {
					t.Fatalf("reply %s", reply)
				}
			}},
		{name: "read missing", op: hostrpc.OpReadFile, req: hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/nope"}, wantCode: hostrpc.CodeNotFound},
		{name: "read too large", op: hostrpc.OpReadFile, req: hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/big.bin"},
			wantCode: hostrpc.CodeTooLarge, wantMsg: "larger than 1000 bytes, the limit per file"},
		{name: "read over the caller's max", op: hostrpc.OpReadFile, req: hostrpc.ReadFileRequest{Env: py, Path: "/home/sandbox/big.bin", Max: 10},
			wantCode: hostrpc.CodeTooLarge, wantMsg: "larger than 10 bytes"},
		{name: "write too large", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: py, Path: "/c.bin", Content: make([]byte, 1001)},
			wantCode: hostrpc.CodeTooLarge, wantMsg: "content is 1001 bytes; the limit is 1000 bytes per file"},
		{name: "path with NUL", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: py, Path: "/a\x00b"}, wantCode: hostrpc.CodeBadRequest},
		{name: "list home", op: hostrpc.OpListFiles, req: hostrpc.ListFilesRequest{Env: py},
			check: func(t *testing.T, reply []byte) {
				if !strings.Contains(string(reply), `"name":"a/b.txt"`) || !strings.Contains(string(reply), `"count":2`) {
					t.Fatalf("reply %s", reply)
				}
			}},
		{name: "install pip", op: hostrpc.OpInstallPackages, req: hostrpc.InstallRequest{Env: py, Packages: []string{"requests[socks]==2.32.3"}},
			check: wantExec(0, "", PipPath+" install --no-input --disable-pip-version-check --index-url "+wire.PipIndexURL+
				" --trusted-host "+wire.PackageProxyHost+" requests[socks]==2.32.3")},
		{name: "install npm", op: hostrpc.OpInstallPackages, req: hostrpc.InstallRequest{Env: node, Packages: []string{"@types/node"}},
			check: wantExec(0, "", "npm install -g --prefix "+NpmPrefix+" --no-fund --no-audit --no-update-notifier --registry "+
				wire.NpmRegistryURL+" @types/node")},
		{name: "install apt", op: hostrpc.OpInstallPackages, req: hostrpc.InstallRequest{Env: sh, Packages: []string{"curl", "g++"}},
			check: wantExec(0, "KEYS", wire.AptInstallCommand+" curl g++")},
		{name: "install apt option injection", op: hostrpc.OpInstallPackages, req: hostrpc.InstallRequest{Env: sh, Packages: []string{"-y"}},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "invalid apt package spec \"-y\""},
		{name: "install failed", op: hostrpc.OpInstallPackages, req: hostrpc.InstallRequest{Env: py, Packages: []string{"no-such-package"}},
			wantCode: hostrpc.CodeFailed, wantMsg: "pip install failed (exit status 1):\nERROR: No matching distribution found for no-such-package"},
		{name: "install option injection", op: hostrpc.OpInstallPackages, req: hostrpc.InstallRequest{Env: py, Packages: []string{"--index-url=http://x"}},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "invalid pip package spec"},
		{name: "exec timeout refused, not clamped", op: hostrpc.OpExec, req: hostrpc.ExecRequest{Env: py, Code: "1", Timeout: time.Hour},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "timeout_seconds 3600 is out of range: use 1 to 300"},
	})

	// Audit: one exec event per run with the caller as principal; file events with digests.
	evs := history(t, c, "h1", py)
	execs := 0
	for _, ev := range evs {
		if ev.Type == events.EnvExec {
			execs++
			if ev.Principal != "tenant-1/key-1" || ev.Correlation != "req-1" {
				t.Fatalf("exec event principal %q correlation %q", ev.Principal, ev.Correlation)
			}
		}
	}
	if execs != 4 { // python, node-by-language, pip install, failed pip install
		t.Fatalf("%d exec events on %s, want 4: %v", execs, py, types(evs))
	}
	var ex events.Exec
	if err := lastOf(evs, events.EnvExec).DecodeData(&ex); err != nil || ex.Language != "install:python" ||
		ex.ExitCode != 1 || !slices.Equal(ex.Packages, []string{"no-such-package"}) {
		t.Fatalf("install audit %+v, %v", ex, err)
	}
	var fw events.File
	if err := lastOf(evs, events.EnvFileWritten).DecodeData(&fw); err != nil || fw.Size != 5 ||
		fw.SHA256 != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("file_written %+v, %v", fw, err)
	}
	if lastOf(evs, events.EnvFileRead) == nil {
		t.Fatal("no file_read event")
	}
	// Activity: the 7 calls on py that reached its VM are counted in one or two coalesced
	// touched events (a flush may fall between the calls), not one per call.
	calls := func() (n, touches int) {
		for _, ev := range history(t, c, "h1", py) {
			var touched events.Touched
			if ev.Type == events.EnvTouched && ev.DecodeData(&touched) == nil {
				n += touched.Calls
				touches++
			}
		}
		return n, touches
	}
	waitFor(t, 5*time.Second, "7 calls in touched events", func() bool { n, _ := calls(); return n == 7 })
	if _, n := calls(); n > 2 {
		t.Fatalf("%d touched events for 7 calls", n)
	}
}

// rpcCase is one call and the error it must give, or the check of its reply.
type rpcCase struct {
	name     string
	op       string
	req      any
	wantCode string
	wantMsg  string
	check    func(t *testing.T, reply []byte)
}

// runRPCCases runs each case as a subtest against host.
func runRPCCases(t *testing.T, nc *nats.Conn, host string, cases []rpcCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var raw rawReply
			e := call(t, nc, host, tt.op, tt.req, &raw)
			if tt.wantCode != "" {
				if e == nil || e.Code != tt.wantCode || !strings.Contains(e.Message, tt.wantMsg) {
					t.Fatalf("error %+v, want %s containing %q", e, tt.wantCode, tt.wantMsg)
				}
				return
			}
			if e != nil {
				t.Fatalf("error %+v", e)
			}
			tt.check(t, raw)
		})
	}
}

// rawReply keeps a reply's JSON for the checks.
type rawReply []byte

func (r *rawReply) UnmarshalJSON(b []byte) error { *r = append((*r)[:0], b...); return nil }

func wantExec(code int, stdout, argv string) func(t *testing.T, reply []byte) {
	return func(t *testing.T, reply []byte) {
		t.Helper()
		var res hostrpc.ExecResult
		if err := json.Unmarshal(reply, &res); err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != code || res.Stdout != stdout || !strings.HasPrefix(res.Stderr, argv) {
			t.Fatalf("exec result %+v, want exit %d stdout %q argv %q", res, code, stdout, argv)
		}
	}
}

// TestRPCTransfers moves file contents too large for one NATS message through transfer
// objects both ways, refuses ones over the limit, audits the real content and leaves no
// object behind.
func TestRPCTransfers(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.Limits.MaxFileBytes = 2 * int(c.NC.MaxPayload())
	runAgent(t, c, cfg, fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python"})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	vm := fm.vms[env]
	file := func(p string) []byte {
		vm.mu.Lock()
		defer vm.mu.Unlock()
		return vm.files[p]
	}

	big := make([]byte, c.NC.MaxPayload()) // larger than one message carries as base64
	_, _ = rand.NewChaCha8([32]byte{2}).Read(big)
	if hostrpc.Inline(len(big), c.NC.MaxPayload()) {
		t.Fatalf("%d bytes fit in one message", len(big))
	}
	huge := make([]byte, cfg.Limits.MaxFileBytes+1)
	vm.mu.Lock()
	vm.files["/home/sandbox/big.bin"], vm.files["/home/sandbox/huge.bin"] = big, huge
	vm.mu.Unlock()
	overLimit := fmt.Sprintf("larger than %d bytes", cfg.Limits.MaxFileBytes)
	// Transfer objects as a router puts them for writes too large for one request.
	tr := hostrpc.NewTransfers(c.Log.JetStream())
	put := func(data []byte) string {
		ref, err := tr.Put(t.Context(), data)
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	bigRef, hugeRef, goneRef := put(big), put(huge), ulid.Make().String()

	runRPCCases(t, c.NC, "h1", []rpcCase{
		{name: "read", op: hostrpc.OpReadFile, req: hostrpc.ReadFileRequest{Env: env, Path: "/home/sandbox/big.bin"},
			check: func(t *testing.T, reply []byte) {
				var res hostrpc.ReadFileResult
				if err := json.Unmarshal(reply, &res); err != nil || res.ContentRef == "" || len(res.Content) != 0 || res.Size != int64(len(big)) {
					t.Fatalf("reply %+v, %v", res, err)
				}
				data, err := tr.Get(t.Context(), res.ContentRef, int64(len(big)))
				if err != nil || !bytes.Equal(data, big) {
					t.Fatalf("transfer object: %d bytes, %v", len(data), err)
				}
				if err := tr.Delete(t.Context(), res.ContentRef); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "read too large", op: hostrpc.OpReadFile, req: hostrpc.ReadFileRequest{Env: env, Path: "/home/sandbox/huge.bin"},
			wantCode: hostrpc.CodeTooLarge, wantMsg: overLimit},
		{name: "write", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/copy.bin", ContentRef: bigRef},
			check: func(t *testing.T, reply []byte) {
				var res hostrpc.WriteFileResult
				if err := json.Unmarshal(reply, &res); err != nil || res.BytesWritten != int64(len(big)) {
					t.Fatalf("reply %+v, %v", res, err)
				}
				if got := file("/home/sandbox/copy.bin"); !bytes.Equal(got, big) {
					t.Fatalf("wrote %d bytes, want %d identical ones", len(got), len(big))
				}
			}},
		{name: "write too large", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/huge2.bin", ContentRef: hugeRef},
			wantCode: hostrpc.CodeTooLarge, wantMsg: overLimit},
		{name: "write object gone", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/x.bin", ContentRef: goneRef},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "transfer object not found"},
		{name: "write bad object name", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/x.bin", ContentRef: "../etc"},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "invalid transfer object name"},
		{name: "write content and object", op: hostrpc.OpWriteFile, req: hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/x.bin", Content: []byte("x"), ContentRef: goneRef},
			wantCode: hostrpc.CodeBadRequest, wantMsg: "not both"},
	})

	sum := sha256.Sum256(big)
	evs := history(t, c, "h1", env)
	for _, typ := range []string{events.EnvFileRead, events.EnvFileWritten} {
		var f events.File
		if err := lastOf(evs, typ).DecodeData(&f); err != nil || f.Size != int64(len(big)) || f.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s event %+v, %v; want %d bytes sha256 %x", typ, f, err, len(big), sum)
		}
	}
	// Every object was taken: by the host (writes, refused ones too) or by the test (reads).
	store, err := c.Log.JetStream().ObjectStore(t.Context(), hostrpc.TransferBucket)
	if err != nil {
		t.Fatal(err)
	}
	if infos, err := store.List(t.Context()); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatalf("transfer objects left behind: %d (%v)", len(infos), err)
	}
}

// TestRPCCallSlots: an environment with MaxRPCsPerEnv calls in progress gets busy
// for its next call while other environments are served, until the host has
// MaxConcurrentRPCs calls in progress; then every call is busy, naming the host. Both are
// refused at once, and served again once calls end.
func TestRPCCallSlots(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.MaxConcurrentRPCs, cfg.MaxRPCsPerEnv = 3, 2
	runAgent(t, c, cfg, fm)
	a, b, d := newEnvID(), newEnvID(), newEnvID()
	for _, env := range []string{a, b, d} {
		place(t, c, "h1", env, events.Requested{Runtime: "python"})
		waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	}
	hold := func(env string) chan *hostrpc.Error {
		done := make(chan *hostrpc.Error, 1)
		go func() { done <- call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "gate"}, nil) }()
		return done
	}
	held := func() int32 {
		n := int32(0)
		for _, env := range []string{a, b, d} {
			n += fm.vms[env].holding.Load()
		}
		return n
	}
	exec := func(env string) *hostrpc.Error {
		return call(t, c.NC, "h1", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "exit 0"}, nil)
	}
	busy := func(e *hostrpc.Error, want string) {
		t.Helper()
		if e == nil || e.Code != hostrpc.CodeBusy || !strings.Contains(e.Message, want) {
			t.Fatalf("error %+v, want busy %q", e, want)
		}
	}

	calls := []chan *hostrpc.Error{hold(a), hold(a)}
	waitFor(t, 5*time.Second, "two calls of a held", func() bool { return held() == 2 })
	busy(exec(a), "environment "+a+" is busy: it has 2 calls in progress, the most one environment may have at once")
	if e := exec(b); e != nil {
		t.Fatalf("other environment: %+v", e)
	}
	calls = append(calls, hold(b))
	waitFor(t, 5*time.Second, "three calls held", func() bool { return held() == 3 })
	busy(exec(d), "host h1 is busy: it has 3 calls in progress, the most it serves at once")
	// A bad request over the bound is busy too: no work is done before the slot is taken.
	busy(call(t, c.NC, "h1", hostrpc.OpListFiles, []byte("not json"), nil), "host h1 is busy")
	close(fm.gate)
	for _, done := range calls {
		if e := <-done; e != nil {
			t.Fatalf("held call: %+v", e)
		}
	}
	for _, env := range []string{a, b, d} {
		if e := exec(env); e != nil {
			t.Fatalf("after the calls ended, %s: %+v", env, e)
		}
	}
}
