package mcp

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/router"
)

// memMachines is an in-memory VM layer for the real host agent: a VM is a map of files, and
// exec answers "42" to code computing 6*7, exits 3 on exit(3) and echoes anything else.
type memMachines struct{}

func (memMachines) Launch(_ context.Context, spec hostagent.LaunchSpec) (hostagent.Machine, error) {
	return &memVM{id: spec.ID, files: map[string][]byte{}}, nil
}

func (memMachines) Scan(context.Context) ([]hostagent.Machine, error) { return nil, nil }

type memVM struct {
	id    string
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

func (m *memVM) Exec(_ context.Context, spec hostagent.ExecSpec) (hostagent.ExecResult, error) {
	code := string(spec.Stdin)
	switch {
	case strings.Contains(code, "6*7"):
		return hostagent.ExecResult{Stdout: []byte("42\n"), Duration: time.Millisecond}, nil
	case strings.Contains(code, "exit(3)"):
		return hostagent.ExecResult{Stderr: []byte("boom\n"), ExitCode: 3}, nil
	}
	return hostagent.ExecResult{Stdout: []byte(strings.Join(spec.Argv, " ") + ":" + code)}, nil
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

// startRealAgent runs the real host agent with in-memory VMs in c until the test ends.
func startRealAgent(t testing.TB, c *cluster, id string) {
	t.Helper()
	cfg := hostagent.DefaultConfig()
	cfg.HostID, cfg.DataDir = id, t.TempDir()
	cfg.Capacity.MaxEnvironments = 1000
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Membership.Logger = cfg.Logger
	nc, _ := c.Connect(t)
	agent, err := hostagent.New(cfg, c.Log, nc, memMachines{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c.waitHosts(1)
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
