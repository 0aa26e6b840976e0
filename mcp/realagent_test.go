// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/router"
)

// memMachines is an in-memory VM layer for the real host agent: a VM is a map of files, and
// exec answers "42" to code computing 6*7, exits 3 on exit(3), waits for the gate to open on
// code naming "gate", and echoes anything else.
type memMachines struct {
	mu  sync.Mutex
	vms map[string]*memVM

	gate    chan struct{} // closed by open
	waiting atomic.Int32  // execs waiting at the gate
	// dir is where Pause also writes a paused VM's files (JSON), for the agent to store and
	// another host's Resume to read; stop ends the agent running on these machines.
	dir  string
	stop func()
}

func newMemMachines() *memMachines {
	return &memMachines{vms: map[string]*memVM{}, gate: make(chan struct{})}
}

// open lets every exec waiting at the gate (and every later one) through.
func (mm *memMachines) open() { close(mm.gate) }

func (mm *memMachines) Launch(_ context.Context, spec hostagent.LaunchSpec) (hostagent.Machine, error) {
	vm := &memVM{id: spec.ID, files: map[string][]byte{}, mm: mm}
	mm.mu.Lock()
	mm.vms[spec.ID] = vm
	mm.mu.Unlock()
	return vm, nil
}

func (*memMachines) Scan(context.Context) ([]hostagent.Machine, error) { return nil, nil }

// Pause stops the VM; its files stay in vms, marked dead, for Resume.
func (mm *memMachines) Pause(ctx context.Context, m hostagent.Machine) (hostagent.Paused, error) {
	if err := m.Stop(ctx); err != nil {
		return hostagent.Paused{}, err
	}
	vm := m.(*memVM)
	vm.mu.Lock()
	data, err := json.Marshal(vm.files)
	vm.mu.Unlock()
	dir, _ := mm.PausedDir(m.ID())
	file := filepath.Join(dir, "files.json")
	if err := errors.Join(err, os.MkdirAll(dir, 0o700), os.WriteFile(file, data, 0o600)); err != nil {
		return hostagent.Paused{}, err
	}
	return hostagent.Paused{Bytes: 4096, Location: "host:mem/" + m.ID(), Files: []string{file}, Took: time.Millisecond}, nil
}

func (mm *memMachines) PausedDir(id string) (string, error) { return filepath.Join(mm.dir, id), nil }

// Resume starts a VM with the paused one's files.
func (mm *memMachines) Resume(_ context.Context, spec hostagent.LaunchSpec) (hostagent.Machine, error) {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	old := mm.vms[spec.ID]
	vm := &memVM{id: spec.ID, mm: mm}
	switch {
	case old == nil: // fetched from another host
		data, err := os.ReadFile(filepath.Join(mm.dir, spec.ID, "files.json"))
		if err != nil {
			return nil, fmt.Errorf("mem: %s is not paused: %w", spec.ID, err)
		}
		if err := json.Unmarshal(data, &vm.files); err != nil {
			return nil, err
		}
	case old.IsAlive():
		return nil, fmt.Errorf("mem: %s is not paused", spec.ID)
	default:
		old.mu.Lock()
		vm.files = old.files
		old.mu.Unlock()
	}
	mm.vms[spec.ID] = vm
	return vm, os.RemoveAll(filepath.Join(mm.dir, spec.ID))
}

func (*memMachines) DropPaused(context.Context, string) error { return nil }

// Fork starts a VM with a copy of src's files.
func (mm *memMachines) Fork(_ context.Context, src hostagent.Machine, spec hostagent.LaunchSpec) (hostagent.Machine, error) {
	old := src.(*memVM)
	vm := &memVM{id: spec.ID, files: map[string][]byte{}, mm: mm}
	old.mu.Lock()
	for p, data := range old.files {
		vm.files[p] = bytes.Clone(data)
	}
	old.mu.Unlock()
	mm.mu.Lock()
	mm.vms[spec.ID] = vm
	mm.mu.Unlock()
	return vm, nil
}

// file is a copy of a file in env's VM (nil if there is none); set replaces it.
func (mm *memMachines) file(env, p string) []byte {
	mm.mu.Lock()
	vm := mm.vms[env]
	mm.mu.Unlock()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return bytes.Clone(vm.files[p])
}

func (mm *memMachines) set(env, p string, data []byte) {
	mm.mu.Lock()
	vm := mm.vms[env]
	mm.mu.Unlock()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.files[p] = data
}

type memVM struct {
	id    string
	mm    *memMachines
	mu    sync.Mutex
	files map[string][]byte
	dead  bool
}

func (m *memVM) ID() string { return m.id }

func (m *memVM) Stop(context.Context) error {
	m.mu.Lock()
	m.dead = true
	m.mu.Unlock()
	return nil
}

func (m *memVM) IsAlive() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.dead
}

func (m *memVM) Renew(context.Context, time.Duration) error { return nil }

func (m *memVM) Exec(ctx context.Context, spec hostagent.ExecSpec) (hostagent.ExecResult, error) {
	code := string(spec.Stdin) + string(spec.Program)
	if strings.Contains(code, "gate") {
		m.mm.waiting.Add(1)
		defer m.mm.waiting.Add(-1)
		select {
		case <-m.mm.gate:
		case <-ctx.Done():
			return hostagent.ExecResult{ExitCode: -1}, ctx.Err()
		}
	}
	var res hostagent.ExecResult
	switch {
	case strings.Contains(code, "drip"):
		// Prints a line now and then, as a long command does: tick 0..2 on stdout, 100 ms
		// apart, then a warning on stderr.
		for i := range 3 {
			time.Sleep(100 * time.Millisecond)
			tick := fmt.Appendf(nil, "tick %d\n", i)
			res.Stdout = append(res.Stdout, tick...)
			if spec.Stdout != nil {
				_, _ = spec.Stdout.Write(tick)
			}
		}
		res.Stderr = []byte("warn\n")
		if spec.Stderr != nil {
			_, _ = spec.Stderr.Write(res.Stderr)
		}
		return res, nil
	case strings.Contains(code, "6*7"):
		res = hostagent.ExecResult{Stdout: []byte("42\n"), Duration: time.Millisecond}
	case strings.Contains(code, "exit(3)"):
		res = hostagent.ExecResult{Stderr: []byte("boom\n"), ExitCode: 3}
	default:
		res = hostagent.ExecResult{Stdout: []byte(strings.Join(spec.Argv, " ") + ":" + code)}
	}
	if spec.Stdout != nil {
		_, _ = spec.Stdout.Write(res.Stdout)
	}
	if spec.Stderr != nil {
		_, _ = spec.Stderr.Write(res.Stderr)
	}
	if strings.Contains(code, "forever") {
		// Runs until it is killed, like a server would.
		<-ctx.Done()
		return hostagent.ExecResult{ExitCode: -1}, ctx.Err()
	}
	return res, nil
}

func (m *memVM) WriteFile(_ context.Context, p string, data []byte, _ uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[p] = data
	return nil
}

func (m *memVM) ReadFile(_ context.Context, p string, limit int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.files[p]
	switch {
	case !ok:
		return nil, hostagent.ErrNotFound
	case int64(len(data)) > limit:
		return nil, hostagent.ErrTooLarge
	}
	return data, nil
}

func (m *memVM) ListFiles(_ context.Context, dir string, _ bool, _ int) ([]hostrpc.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []hostrpc.FileInfo
	for p, data := range m.files {
		if path.Dir(p) == dir {
			out = append(out, hostrpc.FileInfo{Name: path.Base(p), Size: int64(len(data)), Mode: "-rw-r--r--"})
		}
	}
	if out == nil {
		return nil, errors.New("no such directory")
	}
	return out, nil
}

// startRealAgent runs the real host agent with in-memory VMs in c until the test ends; adjust
// changes its configuration.
func startRealAgent(t testing.TB, c *cluster, id string, adjust ...func(*hostagent.Config)) *memMachines {
	t.Helper()
	cfg := hostagent.DefaultConfig()
	cfg.HostID, cfg.DataDir = id, t.TempDir()
	cfg.Capacity.MaxEnvironments = 1000
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Membership.Logger = cfg.Logger
	for _, f := range adjust {
		f(&cfg)
	}
	nc, _ := c.Connect(t)
	mm := newMemMachines()
	mm.dir = filepath.Join(cfg.DataDir, "paused")
	agent, err := hostagent.New(cfg, c.Log, nc, mm)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	var once sync.Once
	mm.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(mm.stop)
	c.waitHosts(1)
	return mm
}

// TestWithRealHostAgent runs the router against the real host agent (with in-memory VMs), so
// the placement events and the host RPC are checked on both sides of the contract.
func TestWithRealHostAgent(t *testing.T) {
	c := newCluster(t, 2, nil)
	startRealAgent(t, c, "real-1")

	cl := c.client(c.key("acme"), "")
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	if env.Host != "real-1" || env.Status != events.StateRunning {
		t.Fatalf("created %+v", env)
	}
	with := func(kv ...any) map[string]any { return envArgs(env.ID, kv...) }
	var out execResult
	cl.ok(toolExecute, with("code", "print(6*7)"), &out)
	if out.Stdout != "42\n" || out.ExitCode != 0 {
		t.Fatalf("execute: %+v", out)
	}
	cl.ok(toolExecute, with("code", "import sys; sys.exit(3)"), &out)
	if out.ExitCode != 3 {
		t.Fatalf("non-zero exit: %+v", out)
	}
	cl.ok(toolWrite, with("path", "/home/sandbox/a.txt", "content", "hello"), nil)
	var file fileContent
	cl.ok(toolRead, with("path", "/home/sandbox/a.txt"), &file)
	if file.Content != "hello" {
		t.Fatalf("read: %+v", file)
	}
	if msg := cl.fails(toolRead, with("path", "/home/sandbox/none")); !strings.Contains(msg, "no such file") {
		t.Errorf("read missing file: %q", msg)
	}
	var listing hostrpc.ListFilesResult
	cl.ok(toolListFile, with(), &listing)
	if listing.Count != 1 {
		t.Fatalf("list_files: %+v", listing)
	}
	var destroyed router.DestroyResult
	cl.ok(toolDestroy, with(), &destroyed)
	if destroyed.Status != events.StateDestroyed {
		t.Fatalf("destroy: %+v", destroyed)
	}
	if msg := cl.fails(toolExecute, with("code", "1")); !strings.Contains(msg, "not running (state: destroyed)") {
		t.Errorf("execute after destroy: %q", msg)
	}
	evs, _, err := c.Log.Load(c.ctx, events.EnvAggregate(env.Host, env.ID))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	t.Logf("events: %v", types)
	for _, want := range []string{events.EnvRequested, events.EnvPlaced, events.EnvStarting, events.EnvStarted,
		events.EnvExec, events.EnvFileWritten, events.EnvFileRead, events.EnvDestroyRequested, events.EnvDestroyed} {
		if !strings.Contains(" "+strings.Join(types, " ")+" ", " "+want+" ") {
			t.Errorf("no %s event in %v", want, types)
		}
	}
}

// TestLargeFilesWithRealHostAgent moves a 12 MiB binary file (larger than the 1 MiB NATS max
// payload of the test server) through the router and the real host agent both ways: the bytes
// arrive identical, no transfer object is left behind, and files over the router's limit are
// refused with the limit named. The router is called directly: MCP's JSON of 16 MiB of base64
// is slow under -race and says nothing about the transfer (TestWithRealHostAgent covers MCP).
func TestLargeFilesWithRealHostAgent(t *testing.T) {
	const limit = 16 << 20
	c := newCluster(t, 1, func(cfg *router.Config) { cfg.Limits.MaxFileBytes = limit })
	vms := startRealAgent(t, c, "real-1")
	cl := c.client(c.key("acme"), "")
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	if hostrpc.Inline(12<<20, c.NC.MaxPayload()) {
		t.Fatalf("12 MiB fits in one message of %d bytes: the test would not use the object store", c.NC.MaxPayload())
	}
	r, acme := c.routers[0], router.Principal{Tenant: "acme", KeyID: "test"}

	blob := make([]byte, 12<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(blob)
	sum := sha256.Sum256(blob)
	w, err := r.WriteFile(c.ctx, acme, env.ID, "/home/sandbox/big.bin", blob)
	if err != nil || w.BytesWritten != int64(len(blob)) || w.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("write_file: %+v, %v; want %d bytes sha256 %x", w, err, len(blob), sum)
	}
	if got := vms.file(env.ID, "/home/sandbox/big.bin"); !bytes.Equal(got, blob) {
		t.Fatalf("the VM holds %d bytes, not the %d written", len(got), len(blob))
	}
	file, err := r.ReadFile(c.ctx, acme, env.ID, "/home/sandbox/big.bin")
	if err != nil || file.Size != int64(len(blob)) || file.ContentRef != "" || !bytes.Equal(file.Content, blob) {
		t.Fatalf("read_file: %v; size %d, %d bytes, identical %v", err, file.Size, len(file.Content), bytes.Equal(file.Content, blob))
	}

	// Over the limit: refused by the router on write, by the host (asked for at most the
	// router's limit) on read; both as too_large naming the limit, also through MCP.
	_, err = r.WriteFile(c.ctx, acme, env.ID, "/home/sandbox/huge.bin", make([]byte, limit+1))
	if ue, ok := router.AsUserError(err); !ok || ue.Kind != router.KindTooLarge || !strings.Contains(ue.Msg, "the limit is 16777216 bytes") {
		t.Errorf("write over the limit: %v", err)
	}
	vms.set(env.ID, "/home/sandbox/huge.bin", make([]byte, limit+1))
	_, err = r.ReadFile(c.ctx, acme, env.ID, "/home/sandbox/huge.bin")
	if ue, ok := router.AsUserError(err); !ok || ue.Kind != router.KindTooLarge || !strings.Contains(ue.Msg, "larger than 16777216 bytes") {
		t.Errorf("read over the limit: %v", err)
	}
	if msg := cl.fails(toolRead, envArgs(env.ID, "path", "/home/sandbox/huge.bin")); !strings.Contains(msg, "larger than 16777216 bytes") {
		t.Errorf("read over the limit through MCP: %q", msg)
	}

	// Audit events record the real content.
	evs, _, err := c.Log.Load(c.ctx, events.EnvAggregate(env.Host, env.ID))
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]events.File{}
	for _, ev := range evs {
		if ev.Type == events.EnvFileWritten || ev.Type == events.EnvFileRead {
			var f events.File
			if err := ev.DecodeData(&f); err != nil {
				t.Fatal(err)
			}
			audited[ev.Type] = f
		}
	}
	for _, typ := range []string{events.EnvFileWritten, events.EnvFileRead} {
		if f := audited[typ]; f.Size != int64(len(blob)) || f.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s event %+v, want size %d sha256 %x", typ, f, len(blob), sum)
		}
	}
	if left := transferObjects(t, c); len(left) > 0 {
		t.Errorf("transfer objects left behind: %v", left)
	}
}

// transferObjects names the objects in the transfer bucket.
func transferObjects(t *testing.T, c *cluster) []string {
	t.Helper()
	store, err := c.Log.JetStream().ObjectStore(c.ctx, hostrpc.TransferBucket)
	if err != nil {
		t.Fatalf("transfer bucket: %v", err)
	}
	infos, err := store.List(c.ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, info := range infos {
		names = append(names, info.Name)
	}
	return names
}
