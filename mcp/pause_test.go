// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/projector"
	"github.com/waggle-dev/waggle/router"
)

// TestPauseResumeTools runs pause_environment and resume_environment through the router and
// the real host agent (in-memory VMs): get_environment and list_environments say paused, a
// paused environment's memory is off its host's allocation, any other call resumes it with its
// files, and another tenant or a bad argument is refused.
func TestPauseResumeTools(t *testing.T) {
	c := newCluster(t, 1, nil)
	startRealAgent(t, c, "real-1")
	acme, globex := c.client(c.key("acme"), ""), c.client(c.key("globex"), "")
	var env envResult
	acme.ok(toolCreate, map[string]any{"runtime": "python", "on_timeout": "pause"}, &env)
	with := func(kv ...any) map[string]any { return envArgs(env.ID, kv...) }
	acme.ok(toolWrite, with("path", "/home/sandbox/kept.txt", "content", "kept"), nil)

	var paused router.PauseResult
	acme.ok(toolPause, with(), &paused)
	if paused.Status != events.StatePaused || paused.SnapshotBytes == 0 {
		t.Fatalf("pause: %+v", paused)
	}
	var got router.EnvDetail
	acme.ok(toolGet, with(), &got)
	if got.Status != events.StatePaused || got.PausedAt == nil || got.SnapshotBytes != paused.SnapshotBytes {
		t.Fatalf("get_environment of a paused environment: %+v", got.EnvInfo)
	}
	var list envList
	eventually(t, func() bool {
		acme.ok(toolList, nil, &list)
		return list.Count == 1 && list.Environments[0].Status == events.StatePaused
	}, "list: %+v", &list)
	view, err := projector.NewReader(c.Log.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	var hosts []*projector.Host
	eventually(t, func() bool {
		hosts, err = view.Hosts(c.ctx)
		return err == nil && len(hosts) == 1 && hosts[0].Allocated.MemoryMiB == 0 && hosts[0].EnvCount == 0
	}, "the paused environment is still allocated: %+v", &hosts)

	// Any other call resumes it first, with its files.
	var file fileContent
	acme.ok(toolRead, with("path", "/home/sandbox/kept.txt"), &file)
	if file.Content != "kept" {
		t.Fatalf("read after pause: %+v", file)
	}
	acme.ok(toolGet, with(), &got)
	if got.Status != events.StateRunning {
		t.Fatalf("state after a call on the paused environment: %s", got.Status)
	}
	var resumed router.ResumeResult
	acme.ok(toolResume, with(), &resumed)
	if !strings.Contains(resumed.Message, "already running") {
		t.Errorf("resume of a running environment: %+v", resumed)
	}
	acme.ok(toolPause, with(), &paused)
	acme.ok(toolResume, with(), &resumed)
	if resumed.Status != events.StateRunning || strings.Contains(resumed.Message, "already") {
		t.Errorf("resume: %+v", resumed)
	}

	notFound := `environment "` + env.ID + `" not found`
	for _, tc := range []struct {
		name string
		cl   *mcpClient
		tool string
		args map[string]any
		want string
	}{
		{"other tenant pauses", globex, toolPause, with(), notFound},
		{"other tenant resumes", globex, toolResume, with(), notFound},
		{"no id", acme, toolPause, map[string]any{}, "environment_id"},
		{"extra argument", acme, toolResume, with("force", true), "force"},
		{"bad on_timeout", acme, toolCreate, map[string]any{"runtime": "python", "on_timeout": "sleep"}, "on_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := tc.cl.fails(tc.tool, tc.args); !strings.Contains(msg, tc.want) {
				t.Errorf("%s: %q, want it to say %q", tc.tool, msg, tc.want)
			}
		})
	}
	var destroyed router.DestroyResult
	acme.ok(toolPause, with(), &paused)
	acme.ok(toolDestroy, with(), &destroyed)
	if destroyed.Status != events.StateDestroyed {
		t.Fatalf("destroy of a paused environment: %+v", destroyed)
	}
	if msg := acme.fails(toolResume, with()); !strings.Contains(msg, "destroyed") {
		t.Errorf("resume after destroy: %q", msg)
	}
}

// TestForkTool runs fork_environment through the router and the real host agent (in-memory
// VMs): the fork runs on the source's host with its files and is independent of it; another
// tenant cannot fork, and bad arguments are refused with what is wrong.
func TestForkTool(t *testing.T) {
	c := newCluster(t, 1, nil)
	startRealAgent(t, c, "real-1")
	acme, globex := c.client(c.key("acme"), ""), c.client(c.key("globex"), "")
	var src envResult
	acme.ok(toolCreate, map[string]any{"runtime": "python", "memory_mib": 256}, &src)
	acme.ok(toolWrite, envArgs(src.ID, "path", "/home/sandbox/f.txt", "content", "src"), nil)
	var fork router.EnvInfo
	acme.ok(toolFork, envArgs(src.ID, "name", "copy"), &fork)
	if fork.ID == src.ID || fork.Host != src.Host || fork.Name != "copy" || fork.Status != events.StateRunning || fork.MemoryMiB != 256 {
		t.Fatalf("fork %+v of %+v", fork, src)
	}
	var file fileContent
	acme.ok(toolRead, envArgs(fork.ID, "path", "/home/sandbox/f.txt"), &file)
	if file.Content != "src" {
		t.Fatalf("fork's file: %+v", file)
	}
	acme.ok(toolWrite, envArgs(fork.ID, "path", "/home/sandbox/f.txt", "content", "fork"), nil)
	acme.ok(toolRead, envArgs(src.ID, "path", "/home/sandbox/f.txt"), &file)
	if file.Content != "src" {
		t.Fatalf("the fork's write reached the source: %+v", file)
	}
	for _, tc := range []struct {
		name string
		cl   *mcpClient
		args map[string]any
		want string
	}{
		{"other tenant", globex, envArgs(src.ID), `environment "` + src.ID + `" not found`},
		{"no id", acme, map[string]any{}, "environment_id"},
		{"name too long", acme, envArgs(src.ID, "name", strings.Repeat("n", 100)), "name"},
		{"unknown argument", acme, envArgs(src.ID, "cpus", 2), "cpus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := tc.cl.fails(toolFork, tc.args); !strings.Contains(msg, tc.want) {
				t.Errorf("fork: %q, want it to say %q", msg, tc.want)
			}
		})
	}
	acme.ok(toolDestroy, envArgs(src.ID), nil)
	if msg := acme.fails(toolFork, envArgs(src.ID)); !strings.Contains(msg, "only a running or paused environment can be forked") {
		t.Errorf("fork of a destroyed environment: %q", msg)
	}
}

// TestResumeOnAnotherHostTool: an environment paused on a host agent run with
// --snapshot-store objects, lost when that host goes away, is resumed by resume_environment on
// the other host as a new environment with its files; the old one's get_environment names it
// (moved_to) and a second resume of the old id says where it went. A paused environment whose
// snapshot stayed on its failed host cannot be resumed, and says why.
func TestResumeOnAnotherHostTool(t *testing.T) {
	c := newCluster(t, 1, nil)
	stored := func(cfg *hostagent.Config) {
		cfg.SnapshotStore, cfg.Drain = hostagent.SnapshotStoreObjects, hostagent.DrainKeep
	}
	mm1 := startRealAgent(t, c, "real-1", stored)
	acme, globex := c.client(c.key("acme"), ""), c.client(c.key("globex"), "")
	var env, local envResult
	acme.ok(toolCreate, map[string]any{"runtime": "python", "memory_mib": 256, "name": "keep"}, &env)
	acme.ok(toolWrite, envArgs(env.ID, "path", "/home/sandbox/kept.txt", "content", "kept"), nil)
	acme.ok(toolPause, envArgs(env.ID), nil)
	mm1.stop()
	mm2 := startRealAgent(t, c, "real-2", func(cfg *hostagent.Config) { cfg.Drain = hostagent.DrainKeep })
	acme.ok(toolCreate, map[string]any{"runtime": "python"}, &local)
	acme.ok(toolPause, envArgs(local.ID), nil)
	mm2.stop()
	startRealAgent(t, c, "real-3")
	// What failure detection does when a host dies (the agents here stopped cleanly).
	for _, e := range []envResult{env, local} {
		appendLost(t, c, e.Host, e.ID)
	}

	if msg := globex.fails(toolResume, envArgs(env.ID)); !strings.Contains(msg, "not found") {
		t.Errorf("another tenant resumes: %q", msg)
	}
	if msg := acme.fails(toolResume, envArgs(local.ID)); !strings.Contains(msg, "only on that host") {
		t.Errorf("resume of a lost environment whose snapshot stayed on its host: %q", msg)
	}
	var resumed router.ResumeResult
	acme.ok(toolResume, envArgs(env.ID), &resumed)
	if resumed.ID == env.ID || resumed.MovedFrom != env.ID || resumed.Host != "real-3" || resumed.Status != events.StateRunning {
		t.Fatalf("resume on another host: %+v", resumed)
	}
	var file fileContent
	acme.ok(toolRead, envArgs(resumed.ID, "path", "/home/sandbox/kept.txt"), &file)
	if file.Content != "kept" {
		t.Fatalf("file after the move: %+v", file)
	}
	var old, moved router.EnvDetail
	acme.ok(toolGet, envArgs(env.ID), &old)
	acme.ok(toolGet, envArgs(resumed.ID), &moved)
	if old.Status != events.StateMoved || old.MovedTo != resumed.ID || moved.ResumedFrom != env.ID || moved.Name != "keep" || moved.MemoryMiB != 256 {
		t.Fatalf("after the move: old %+v, new %+v", old.EnvInfo, moved.EnvInfo)
	}
	if msg := acme.fails(toolResume, envArgs(env.ID)); !strings.Contains(msg, resumed.ID) {
		t.Errorf("second resume of the moved environment: %q, want it to name %s", msg, resumed.ID)
	}
}

// appendLost appends lost to env on host, as the failure detection does.
func appendLost(t *testing.T, c *cluster, host, env string) {
	t.Helper()
	head, err := c.Log.Head(c.ctx, events.EnvAggregate(host, env))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewEnvEvent(host, env, events.EnvLost, "host:test", events.Reason{Reason: "host " + host + " failed"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Log.Append(c.ctx, ev, head); err != nil {
		t.Fatal(err)
	}
}
