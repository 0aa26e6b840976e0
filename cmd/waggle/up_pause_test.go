// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// pauseOut is the result of pause_environment, resumeOut of resume_environment.
type pauseOut struct {
	Status        string `json:"status"`
	SnapshotBytes int64  `json:"snapshot_bytes"`
	PauseMS       int64  `json:"pause_ms"`
}

type resumeOut struct {
	Status   string `json:"status"`
	ResumeMS int64  `json:"resume_ms"`
}

// counterCode starts a counter in the background that writes its count every 0.5 s, and
// prints its pid once the first count is out.
const counterCode = `setsid sh -c 'echo $$ > /home/sandbox/counter.pid; i=0; while :; do i=$((i+1)); echo $i > /home/sandbox/count; sleep 0.5; done' ` +
	`</dev/null >/dev/null 2>&1 & while [ ! -s /home/sandbox/count ]; do sleep 0.1; done; cat /home/sandbox/counter.pid`

// runShell runs code with bash in env, which must exit 0, and returns its output trimmed.
func runShell(t *testing.T, s *mcpT, env, code string) string {
	t.Helper()
	var out execOut
	s.ok("execute", map[string]any{"environment_id": env, "code": code, "language": "shell"}, &out)
	if out.ExitCode != 0 {
		t.Fatalf("%s: exit %d: %s%s", code, out.ExitCode, out.Stdout, out.Stderr)
	}
	return strings.TrimSpace(out.Stdout)
}

// startPauseUp is the `waggle up` of the pause and fork tests: one host with room for a few
// python environments, and an MCP session to it.
func startPauseUp(t *testing.T) (*upProc, *mcpT) {
	t.Helper()
	vmtest.Require(t)
	vmtest.Kernel(t)
	vmtest.Image(t, "python")
	w := startUp(t, upSetup{hosts: 1, routers: 1, extra: []string{
		"--capacity-memory", "3072", "--capacity-cpus", "6", "--max-environments", "6"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return w, dialT(ctx, t, w.urls[0], w.key, newCallLog())
}

// TestUpPauseResume pauses a python environment with a file and a running background process
// through MCP on real VMs: get_environment says paused; resume_environment brings it back with
// the file and the same process still counting (not restarted); a second pause is resumed by
// execute itself.
func TestUpPauseResume(t *testing.T) {
	_, s := startPauseUp(t)

	var env envOut
	s.ok("create_environment", map[string]any{"runtime": "python", "timeout_minutes": 10}, &env)
	id := map[string]any{"environment_id": env.ID}
	shell := func(code string) string { t.Helper(); return runShell(t, s, env.ID, code) }
	s.ok("write_file", map[string]any{"environment_id": env.ID, "path": "/home/sandbox/kept.txt", "content": "kept"}, nil)
	pid := shell(counterCode)
	// count reads the counter, checking that the process is the same one and alive.
	count := func() int {
		t.Helper()
		out := shell("kill -0 " + pid + " && cat /home/sandbox/counter.pid /home/sandbox/count")
		f := strings.Fields(out)
		if len(f) != 2 || f[0] != pid {
			t.Fatalf("counter: %q, want pid %s and a count", out, pid)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	time.Sleep(time.Second)
	before := count()

	for round, how := range []string{"resume_environment", "execute"} {
		var p pauseOut
		s.ok("pause_environment", id, &p)
		if p.Status != events.StatePaused || p.SnapshotBytes == 0 {
			t.Fatalf("pause: %+v", p)
		}
		var got envOut
		s.ok("get_environment", id, &got)
		if got.Status != events.StatePaused {
			t.Fatalf("get_environment after pause: %+v", got)
		}
		start := time.Now()
		if how == "resume_environment" {
			var r resumeOut
			s.ok("resume_environment", id, &r)
			if r.Status != events.StateRunning {
				t.Fatalf("resume: %+v", r)
			}
			t.Logf("round %d: paused in %d ms (snapshot %d MiB), resumed in %d ms", round, p.PauseMS, p.SnapshotBytes>>20, r.ResumeMS)
		}
		after := count() // by execute: the second round resumes here
		t.Logf("round %d: %s to the first call answered: %s; count %d -> %d", round, how, time.Since(start).Round(time.Millisecond), before, after)
		if after < before {
			t.Fatalf("round %d: count %d after resume, %d before: the counter restarted", round, after, before)
		}
		time.Sleep(1500 * time.Millisecond)
		if later := count(); later <= after {
			t.Fatalf("round %d: count %d, %d a second and a half earlier: the counter stopped", round, later, after)
		}
		before = count()
	}
	var file struct {
		Content string `json:"content"`
	}
	s.ok("read_file", map[string]any{"environment_id": env.ID, "path": "/home/sandbox/kept.txt"}, &file)
	if file.Content != "kept" {
		t.Fatalf("file after resume: %+v", file)
	}
	s.ok("get_environment", id, &env)
	if env.Status != events.StateRunning {
		t.Fatalf("state at the end: %s", env.Status)
	}
	s.ok("destroy_environment", id, nil)
}

// vmHostKey is the SSH host key of env's VM, as its shim's state file records it (the host
// pins it).
func vmHostKey(t *testing.T, dataDir, env string) string {
	t.Helper()
	var matches []string
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == shim.StateFile && filepath.Base(filepath.Dir(p)) == env {
			matches = append(matches, p)
		}
		return nil
	})
	if err != nil || len(matches) != 1 {
		t.Fatalf("state file of VM %s under %s: %v %v", env, dataDir, matches, err)
	}
	st, err := shim.ReadState(filepath.Dir(matches[0]))
	if err != nil || st.HostKey == "" {
		t.Fatalf("state of VM %s: %+v %v", env, st, err)
	}
	return st.HostKey
}

// TestUpFork forks a python environment with a file and a running background process twice
// through MCP on real VMs: each fork has the file and the same process still counting; a file
// written in a fork appears neither in the source nor in the other fork; the forks have their
// own SSH host keys, different random bytes and the host's clock (within 1 s).
func TestUpFork(t *testing.T) {
	w, s := startPauseUp(t)
	shell := func(env, code string) string { t.Helper(); return runShell(t, s, env, code) }
	var src envOut
	s.ok("create_environment", map[string]any{"runtime": "python", "timeout_minutes": 10}, &src)
	s.ok("write_file", map[string]any{"environment_id": src.ID, "path": "/home/sandbox/kept.txt", "content": "kept"}, nil)
	pid := shell(src.ID, counterCode)
	time.Sleep(time.Second)

	var forks []envOut
	for i := range 2 {
		var f envOut
		start := time.Now()
		s.ok("fork_environment", map[string]any{"environment_id": src.ID, "name": "fork-" + strconv.Itoa(i)}, &f)
		took := time.Since(start)
		if f.ID == src.ID || f.Status != events.StateRunning || f.Host != src.Host {
			t.Fatalf("fork: %+v (source %+v)", f, src)
		}
		forks = append(forks, f)
		t.Logf("fork %d: fork_environment answered in %s", i, took.Round(time.Millisecond))
	}
	for _, f := range forks {
		out := shell(f.ID, "cat /home/sandbox/kept.txt; echo; kill -0 "+pid+" && cat /home/sandbox/count; sleep 1.2; cat /home/sandbox/count")
		lines := strings.Fields(out)
		if len(lines) != 3 || lines[0] != "kept" {
			t.Fatalf("fork %s: %q, want the file and two counts", f.ID, out)
		}
		first, _ := strconv.Atoi(lines[1])
		second, _ := strconv.Atoi(lines[2])
		if first < 2 || second <= first {
			t.Errorf("fork %s: counts %d then %d: the counter process did not go on", f.ID, first, second)
		}
	}
	shell(forks[0].ID, "echo mine > /home/sandbox/fork0.txt")
	for _, env := range []string{src.ID, forks[1].ID} {
		if out := shell(env, "ls /home/sandbox/fork0.txt 2>/dev/null || echo absent"); out != "absent" {
			t.Errorf("environment %s sees the fork's file: %q", env, out)
		}
	}
	// Identity: host keys, random bytes, clocks.
	keys := map[string]string{}
	random := map[string]string{}
	for _, env := range []string{src.ID, forks[0].ID, forks[1].ID} {
		key := vmHostKey(t, w.dataDir, env)
		if other, dup := keys[key]; dup {
			t.Errorf("environments %s and %s have the same SSH host key", other, env)
		}
		keys[key] = env
		out := shell(env, "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s.%N")
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("%s: %q", env, out)
		}
		if other, dup := random[f[0]]; dup {
			t.Errorf("environments %s and %s read the same 16 bytes from /dev/urandom: %s", other, env, f[0])
		}
		random[f[0]] = env
		guest, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		if skew := float64(time.Now().UnixNano())/1e9 - guest; skew > 2 || skew < -1 {
			// the execute's own latency is on the host's side of the difference
			t.Errorf("environment %s: clock %.3f s off the host's", env, skew)
		}
	}
	for _, env := range []string{forks[0].ID, forks[1].ID, src.ID} {
		s.ok("destroy_environment", map[string]any{"environment_id": env}, nil)
	}
}
