// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// agentProc is one `waggle hostagent` process.
type agentProc struct {
	id, dataDir, bind string
	args              []string
	cmd               *exec.Cmd
	out               *bytes.Buffer
}

// freeAddr is a loopback host:port nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// shortDir is a directory with a short path (VM sockets live in it), searchable but not
// listable by others (each VM's QEMU runs as a uid of its own and must reach its VM directory).
func shortDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// gossipKey is the AES-256 key the test's agents share, base64.
const gossipKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func newAgentProc(t *testing.T, bins vmtest.Binaries, c *eventstest.Node, id, bind, join string) *agentProc {
	p := &agentProc{id: id, dataDir: shortDir(t, "wha-"+id), bind: bind}
	p.args = []string{"hostagent", "--host-id", id, "--nats-url", c.Server.ClientURL(), "--data-dir", p.dataDir,
		"--nats-creds", c.Creds(t, access.HostAgent, id),
		"--cache-dir", vmtest.CacheDir(t), "--init", bins.Init, "--bind", bind, "--join", join,
		"--gossip-key", gossipKey, "--capacity-memory", "2048", "--capacity-cpus", "4", "--max-environments", "4",
		"--accel", "tcg", "--drain", DrainKeep, "--log-level", "debug"}
	t.Cleanup(func() {
		if p.cmd != nil && p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", id, p.out)
		}
	})
	return p
}

// start runs the agent and waits for its host.joined event.
func (p *agentProc) start(t *testing.T, bins vmtest.Binaries, c *eventstest.Node) {
	t.Helper()
	before := countHostEvents(t, c, p.id, events.HostJoined)
	p.out = &bytes.Buffer{}
	p.cmd = exec.Command(bins.Waggle, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "host.joined of "+p.id, func() bool {
		return countHostEvents(t, c, p.id, events.HostJoined) > before
	})
}

// stop signals the agent and waits for it to exit.
func (p *agentProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("agent %s exited: %v\n%s", p.id, err, p.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("agent %s did not exit after %v", p.id, sig)
	}
}

func countHostEvents(t *testing.T, c *eventstest.Node, host, typ string) int {
	t.Helper()
	evs, _, err := c.Log.Load(context.Background(), events.HostAggregate(host))
	if err != nil {
		t.Fatal(err)
	}
	return countType(evs, typ)
}

// vmDirs lists the VM directories in an agent's data dir.
func vmDirs(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "vms"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// qemuProcesses lists the QEMU processes whose command line mentions one of dirs.
func qemuProcesses(dirs ...string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(raw, []byte("qemu-system")) {
			continue
		}
		for _, d := range dirs {
			if bytes.Contains(raw, []byte(d)) {
				out = append(out, filepath.Base(filepath.Dir(p)))
			}
		}
	}
	return out
}

func execIn(t *testing.T, c *eventstest.Node, host, env, code string) hostrpc.ExecResult {
	t.Helper()
	var res hostrpc.ExecResult
	if e := call(t, c.NC, host, hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: code, Language: "shell", Timeout: 30 * time.Second}, &res); e != nil {
		t.Fatalf("exec in %s on %s: %+v", env, host, e)
	}
	return res
}

// TestTwoAgentProcesses runs two `waggle hostagent` processes with real VMs against one
// embedded NATS server: placement on B boots there only; exec and file calls reach it; a
// graceful restart of A re-adopts its VM without a new boot; SIGKILL of B gets host.failed and
// lost within seconds; B's restart kills the lost environment's VM; no QEMU survives.
// checkGuestProcess runs a background process in a real guest: its output streams while it
// runs, and process_kill kills it.
func checkGuestProcess(t *testing.T, c *eventstest.Node, host, env string) {
	t.Helper()
	var started hostrpc.ProcessStartResult
	if e := call(t, c.NC, host, hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: env, Language: "shell",
		Code: "echo $$ >/tmp/bg.pid; echo started; sleep 300"}, &started); e != nil {
		t.Fatalf("process_start: %+v", e)
	}
	var res hostrpc.ProcessResult
	waitFor(t, 30*time.Second, "the process's first output", func() bool {
		if e := call(t, c.NC, host, hostrpc.OpProcessRead, hostrpc.ProcessRequest{Env: env, ProcessID: started.ProcessID}, &res); e != nil {
			t.Fatalf("process_read: %+v", e)
		}
		return res.Stdout == "started\n"
	})
	if !res.Running {
		t.Fatalf("process ended early: %+v", res)
	}
	if e := call(t, c.NC, host, hostrpc.OpProcessKill, hostrpc.ProcessRequest{Env: env, ProcessID: started.ProcessID}, &res); e != nil || res.Running || !res.Killed {
		t.Fatalf("process_kill: %+v %+v", e, res)
	}
	if got := execIn(t, c, host, env, "kill -0 $(cat /tmp/bg.pid) 2>/dev/null && echo alive || echo gone").Stdout; got != "gone\n" {
		t.Fatalf("killed process is %q", got)
	}
}

func TestTwoAgentProcesses(t *testing.T) {
	vmtest.Require(t)
	vmtest.Image(t, "shell")
	bins := vmtest.Build(t)
	vmtest.Kernel(t)
	c := eventstest.StartSecure(t) // each agent with its own credential, as in a cluster

	bindA, bindB := freeAddr(t), freeAddr(t)
	a := newAgentProc(t, bins, c, "a", bindA, bindB) // B is not up yet: A retries the join
	b := newAgentProc(t, bins, c, "b", bindB, bindA)
	t.Cleanup(func() { // safety net: stop every VM left in either data dir, then look for QEMU
		for _, p := range []*agentProc{a, b} {
			cfg := vm.DefaultConfig()
			cfg.StateDir, cfg.CacheDir, cfg.WaggleBinary, cfg.InitBinary = p.dataDir, vmtest.CacheDir(t), bins.Waggle, bins.Init
			if mgr, err := vm.NewManager(cfg); err == nil {
				ms, _ := mgr.Scan(context.Background())
				for _, m := range ms {
					t.Errorf("VM %s left in %s", m.ID(), p.id)
					_ = m.Stop(context.Background())
				}
			}
		}
		if procs := qemuProcesses(a.dataDir, b.dataDir); len(procs) > 0 {
			t.Errorf("QEMU processes survive: %v", procs)
		}
	})
	a.start(t, bins, c)
	b.start(t, bins, c)

	// Placement on B boots there and only there.
	envB := newEnvID()
	start := time.Now()
	place(t, c, "b", envB, events.Requested{Runtime: "shell", TTLSeconds: 600})
	waitState(t, c, "b", envB, events.StateRunning, 2*time.Minute)
	t.Logf("placed -> started on b: %s", time.Since(start).Round(time.Millisecond))
	if got := vmDirs(t, b.dataDir); len(got) != 1 || got[0] != envB {
		t.Fatalf("VMs on b: %v", got)
	}
	if got := vmDirs(t, a.dataDir); len(got) != 0 {
		t.Fatalf("VMs on a: %v", got)
	}

	// Exec and file calls reach it.
	if res := execIn(t, c, "b", envB, "echo hello from $(hostname); echo oops >&2; exit 7"); res.Stdout != "hello from "+envB+"\n" || res.Stderr != "oops\n" || res.ExitCode != 7 {
		t.Fatalf("exec result %+v", res)
	}
	if e := call(t, c.NC, "b", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: envB, Path: "/home/sandbox/notes/a.txt", Content: []byte("content")}, nil); e != nil {
		t.Fatalf("write_file: %+v", e)
	}
	var rf hostrpc.ReadFileResult
	if e := call(t, c.NC, "b", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: envB, Path: "/home/sandbox/notes/a.txt"}, &rf); e != nil || string(rf.Content) != "content" {
		t.Fatalf("read_file: %+v %q", e, rf.Content)
	}
	var lf hostrpc.ListFilesResult
	if e := call(t, c.NC, "b", hostrpc.OpListFiles, hostrpc.ListFilesRequest{Env: envB, Recursive: true}, &lf); e != nil || !strings.Contains(fmt.Sprint(lf.Files), "notes/a.txt") {
		t.Fatalf("list_files: %+v %+v", e, lf)
	}
	checkGuestProcess(t, c, "b", envB)
	if e := call(t, c.NC, "a", hostrpc.OpExec, hostrpc.ExecRequest{Env: envB, Code: "true"}, nil); e == nil || e.Code != hostrpc.CodeNotFound {
		t.Fatalf("exec of b's environment on a: %+v", e)
	}

	// A graceful restart of A (drain=keep) adopts its VM: same boot, no new starting.
	envA := newEnvID()
	place(t, c, "a", envA, events.Requested{Runtime: "shell", TTLSeconds: 600})
	waitState(t, c, "a", envA, events.StateRunning, 2*time.Minute)
	bootID := execIn(t, c, "a", envA, "cat /proc/sys/kernel/random/boot_id").Stdout
	a.stop(t, syscall.SIGTERM)
	a.start(t, bins, c)
	if got := execIn(t, c, "a", envA, "cat /proc/sys/kernel/random/boot_id").Stdout; got != bootID {
		t.Fatalf("boot id %q after restart, was %q: the VM was rebooted", got, bootID)
	}
	if n := countType(history(t, c, "a", envA), events.EnvStarting); n != 1 {
		t.Fatalf("%d starting events for the adopted environment", n)
	}
	if countHostEvents(t, c, "a", events.HostFailed) != 0 {
		t.Fatal("a graceful restart was reported as a failure")
	}

	// SIGKILL of B: host.failed and lost, reported by A.
	b.stop(t, syscall.SIGKILL)
	killed := time.Now()
	waitFor(t, 10*time.Second, "host.failed of b", func() bool { return countHostEvents(t, c, "b", events.HostFailed) == 1 })
	failedAfter := time.Since(killed)
	waitState(t, c, "b", envB, events.StateLost, 10*time.Second)
	lostAfter := time.Since(killed)
	t.Logf("SIGKILL of agent b -> host.failed %s, -> lost %s", failedAfter.Round(time.Millisecond), lostAfter.Round(time.Millisecond))
	if lostAfter > 3*time.Second {
		t.Errorf("lost after %s, target 3s", lostAfter)
	}

	// B comes back: it rejoins and kills the VM of its lost environment.
	b.start(t, bins, c)
	waitFor(t, 30*time.Second, "b's lost VM removed", func() bool { return len(vmDirs(t, b.dataDir)) == 0 })
	if got := state(t, c, "b", envB); got != events.StateLost {
		t.Fatalf("lost environment came back as %s", got)
	}

	// Clean up through the log: destroy A's environment, then stop both agents.
	appendEnv(t, c, "a", envA, mustEvent(t, "a", envA, events.EnvDestroyRequested, events.DestroyRequested{By: "test", Reason: events.ReasonUser}))
	waitState(t, c, "a", envA, events.StateDestroyed, 30*time.Second)
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
	if got := append(vmDirs(t, a.dataDir), vmDirs(t, b.dataDir)...); len(got) != 0 {
		t.Fatalf("VM directories left: %v", got)
	}
}

// startAgentPair starts two `waggle hostagent` processes a and b (with extra flags) on a
// secure node for shell environments, and checks at cleanup that no QEMU of theirs survives.
func startAgentPair(t *testing.T, extra ...string) (*eventstest.Node, *agentProc, *agentProc) {
	t.Helper()
	vmtest.Require(t)
	vmtest.Image(t, "shell")
	bins := vmtest.Build(t)
	vmtest.Kernel(t)
	c := eventstest.StartSecure(t)
	bindA, bindB := freeAddr(t), freeAddr(t)
	a := newAgentProc(t, bins, c, "a", bindA, bindB)
	b := newAgentProc(t, bins, c, "b", bindB, bindA)
	for _, p := range []*agentProc{a, b} {
		p.args = append(p.args, extra...)
	}
	t.Cleanup(func() {
		if procs := qemuProcesses(a.dataDir, b.dataDir); len(procs) > 0 {
			t.Errorf("QEMU processes survive: %v", procs)
		}
	})
	a.start(t, bins, c)
	b.start(t, bins, c)
	return c, a, b
}

// TestPausedHostFenced stops a host agent's process (SIGSTOP) past the failure detection time
// and continues it: the other agent declares it failed and its environment lost; afterwards no
// call on that environment succeeds, its VM is gone, the audit log holds every call that was
// answered, and the host (a new incarnation) takes new environments.
func TestPausedHostFenced(t *testing.T) {
	c, a, b := startAgentPair(t)

	env := newEnvID()
	place(t, c, "b", env, events.Requested{Runtime: "shell", TTLSeconds: 600})
	waitState(t, c, "b", env, events.StateRunning, 2*time.Minute)
	execIn(t, c, "b", env, "echo before")
	if e := call(t, c.NC, "b", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/f", Content: []byte("x")}, nil); e != nil {
		t.Fatalf("write_file: %+v", e)
	}

	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	waitFor(t, 15*time.Second, "host.failed of b", func() bool { return countHostEvents(t, c, "b", events.HostFailed) == 1 })
	waitState(t, c, "b", env, events.StateLost, 15*time.Second)
	t.Logf("SIGSTOP of agent b -> host.failed and lost after %s", time.Since(paused).Round(time.Millisecond))
	joinsBefore := countHostEvents(t, c, "b", events.HostJoined)
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// No call on the lost environment succeeds, from the moment b runs again.
	if e := call(t, c.NC, "b", hostrpc.OpExec, hostrpc.ExecRequest{Env: env, Code: "echo after", Language: "shell", Timeout: 10 * time.Second}, nil); e == nil {
		t.Fatal("exec on the lost environment succeeded after SIGCONT")
	}
	waitFor(t, 30*time.Second, "b's VM of the lost environment removed", func() bool {
		return len(vmDirs(t, b.dataDir)) == 0 && len(qemuProcesses(b.dataDir)) == 0
	})
	waitFor(t, 30*time.Second, "b announces a new incarnation", func() bool {
		return countHostEvents(t, c, "b", events.HostJoined) > joinsBefore
	})
	for _, op := range []string{hostrpc.OpExec, hostrpc.OpReadFile} {
		req := map[string]any{"env": env, "code": "true", "language": "shell", "path": "/home/sandbox/f"}
		if e := call(t, c.NC, "b", op, req, nil); e == nil || e.Code != hostrpc.CodeNotRunning {
			t.Fatalf("%s on the lost environment: %+v, want not_running", op, e)
		}
	}
	// Every answered call is in the audit log.
	h := history(t, c, "b", env)
	if countType(h, events.EnvExec) != 1 || countType(h, events.EnvFileWritten) != 1 {
		t.Fatalf("audit events %v: want the exec and the write that were answered", types(h))
	}

	// The new incarnation takes placements.
	fresh := newEnvID()
	place(t, c, "b", fresh, events.Requested{Runtime: "shell", TTLSeconds: 600})
	waitState(t, c, "b", fresh, events.StateRunning, 2*time.Minute)
	if got := execIn(t, c, "b", fresh, "echo fresh").Stdout; got != "fresh\n" {
		t.Fatalf("exec on b's new environment: %q", got)
	}
	appendEnv(t, c, "b", fresh, mustEvent(t, "b", fresh, events.EnvDestroyRequested, events.DestroyRequested{By: "test", Reason: events.ReasonUser}))
	waitState(t, c, "b", fresh, events.StateDestroyed, 30*time.Second)
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
}

// TestResumeOnAnotherHost: agent b, run with --snapshot-store objects, pauses an environment
// with a file (its snapshot also goes to the object store) and is killed (SIGKILL); once the
// environment is lost, a new environment placed on a with resume_of (as resume_environment
// does) starts from that snapshot on real VMs, with the file, and the stored copy is gone.
func TestResumeOnAnotherHost(t *testing.T) {
	c, a, b := startAgentPair(t, "--snapshot-store", SnapshotStoreObjects)

	req := events.Requested{Runtime: "shell", Owner: "acme", TTLSeconds: 600, Resources: events.Resources{CPUs: 1, MemoryMiB: 512}}
	env := newEnvID()
	place(t, c, "b", env, req)
	waitState(t, c, "b", env, events.StateRunning, 2*time.Minute)
	if e := call(t, c.NC, "b", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/kept.txt", Content: []byte("kept")}, nil); e != nil {
		t.Fatalf("write_file: %+v", e)
	}
	var paused hostrpc.PauseResult
	start := time.Now()
	if e := call(t, c.NC, "b", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, &paused); e != nil || paused.Location != hostrpc.StoredLocation(env) {
		t.Fatalf("pause: %+v %+v", paused, e)
	}
	t.Logf("pause with the upload: %s (snapshot %d MiB, guest paused %d ms)", time.Since(start).Round(time.Millisecond),
		paused.SnapshotBytes>>20, paused.PauseMS)

	b.stop(t, syscall.SIGKILL)
	waitState(t, c, "b", env, events.StateLost, 15*time.Second)

	moved := newEnvID()
	r := req
	r.ResumeOf = env
	start = time.Now()
	place(t, c, "a", moved, r)
	waitState(t, c, "a", moved, events.StateRunning, 2*time.Minute)
	t.Logf("placed with resume_of -> running on a: %s", time.Since(start).Round(time.Millisecond))
	var rf hostrpc.ReadFileResult
	if e := call(t, c.NC, "a", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: moved, Path: "/home/sandbox/kept.txt"}, &rf); e != nil || string(rf.Content) != "kept" {
		t.Fatalf("read_file on a: %+v %q", e, rf.Content)
	}
	if got := execIn(t, c, "a", moved, "hostname").Stdout; got != moved+"\n" {
		t.Errorf("hostname %q, want the new environment's id", got)
	}
	if _, err := hostrpc.NewSnapshots(c.Log.JetStream()).Get(t.Context(), env, filepath.Join(t.TempDir(), "s"), hostrpc.SnapshotMaxBytes); !errors.Is(err, hostrpc.ErrSnapshotNotFound) {
		t.Errorf("stored snapshot after the move: %v, want it deleted", err)
	}
	appendEnv(t, c, "a", moved, mustEvent(t, "a", moved, events.EnvDestroyRequested, events.DestroyRequested{By: "test", Reason: events.ReasonUser}))
	waitState(t, c, "a", moved, events.StateDestroyed, 30*time.Second)
	a.stop(t, syscall.SIGTERM)
}
