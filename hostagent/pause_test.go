// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// TestPauseResume: a paused environment has no VM and gives its memory back; another call
// resumes it first (with its files), resume_environment does too, and destroying a paused
// environment drops its snapshot. Calls on environments that cannot be paused or resumed are
// refused with what is wrong.
func TestPauseResume(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	a, _ := runAgent(t, c, testConfig(t, "h1"), fm)
	env, pending := newEnvID(), newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python", Resources: events.Resources{CPUs: 1, MemoryMiB: 512}})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	appendEnv(t, c, "h1", pending, mustEvent(t, "h1", pending, events.EnvRequested, events.Requested{Runtime: "python"}))
	if herr := call(t, c.NC, "h1", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/kept", Content: []byte("k")}, nil); herr != nil {
		t.Fatal(herr)
	}
	usedBefore, countBefore := a.Usage()

	var paused hostrpc.PauseResult
	if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, &paused); herr != nil {
		t.Fatal(herr)
	}
	if paused.SnapshotBytes == 0 || !strings.HasPrefix(paused.Location, "host:") {
		t.Errorf("pause result %+v", paused)
	}
	if got := state(t, c, "h1", env); got != events.StatePaused {
		t.Fatalf("state %q after pause", got)
	}
	if fm.vm(env) != nil || !fm.isPaused(env) {
		t.Fatal("the VM still runs, or nothing was saved")
	}
	if used, count := a.Usage(); used.MemoryMiB != usedBefore.MemoryMiB-512 || count != countBefore-1 {
		t.Errorf("usage after pause %+v/%d, before %+v/%d: want the memory back", used, count, usedBefore, countBefore)
	}
	ev := lastOf(history(t, c, "h1", env), events.EnvPaused)
	var pd events.Paused
	if err := ev.DecodeData(&pd); err != nil || pd.SnapshotBytes != paused.SnapshotBytes || pd.Location != paused.Location || pd.Reason != pausedByCall {
		t.Errorf("paused event %+v %v", pd, err)
	}
	paused = hostrpc.PauseResult{}
	if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, &paused); herr != nil || !paused.AlreadyPaused {
		t.Errorf("second pause: %+v %v", paused, herr)
	}

	// Any other call resumes it first.
	var read hostrpc.ReadFileResult
	if herr := call(t, c.NC, "h1", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: env, Path: "/home/sandbox/kept"}, &read); herr != nil || string(read.Content) != "k" {
		t.Fatalf("read on a paused environment: %q %v", read.Content, herr)
	}
	if got := state(t, c, "h1", env); got != events.StateRunning || fm.vm(env) == nil {
		t.Fatalf("state %q after a call on the paused environment", got)
	}
	var rd events.Resumed
	if err := lastOf(history(t, c, "h1", env), events.EnvResumed).DecodeData(&rd); err != nil || !rd.Transparent {
		t.Errorf("resumed event %+v %v, want transparent", rd, err)
	}

	// resume_environment, and resume of a running one.
	var resumed hostrpc.ResumeResult
	if herr := call(t, c.NC, "h1", hostrpc.OpResume, hostrpc.EnvRequest{Env: env}, &resumed); herr != nil || !resumed.AlreadyRunning {
		t.Errorf("resume of a running environment: %+v %v", resumed, herr)
	}
	if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, nil); herr != nil {
		t.Fatal(herr)
	}
	resumed = hostrpc.ResumeResult{}
	if herr := call(t, c.NC, "h1", hostrpc.OpResume, hostrpc.EnvRequest{Env: env}, &resumed); herr != nil || resumed.AlreadyRunning {
		t.Fatalf("resume: %+v %v", resumed, herr)
	}
	if got := state(t, c, "h1", env); got != events.StateRunning || fm.resumes.Load() != 2 {
		t.Fatalf("state %q, %d resumes", got, fm.resumes.Load())
	}

	for _, tc := range []struct {
		name, op, env, code, msg string
	}{
		{"pause unknown", hostrpc.OpPause, newEnvID(), hostrpc.CodeNotFound, "not found on host h1"},
		{"pause not running", hostrpc.OpPause, pending, hostrpc.CodeNotRunning, "is requested: only a running environment can be paused or resumed"},
		{"resume not running", hostrpc.OpResume, pending, hostrpc.CodeNotRunning, "is requested"},
		{"bad id", hostrpc.OpPause, "../x", hostrpc.CodeBadRequest, "environment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			herr := call(t, c.NC, "h1", tc.op, hostrpc.EnvRequest{Env: tc.env}, nil)
			if herr == nil || herr.Code != tc.code || !strings.Contains(herr.Message, tc.msg) {
				t.Fatalf("%s %s: %+v, want %s with %q", tc.op, tc.env, herr, tc.code, tc.msg)
			}
		})
	}

	// Destroying a paused environment drops its snapshot.
	if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, nil); herr != nil {
		t.Fatal(herr)
	}
	appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvDestroyRequested, events.DestroyRequested{By: "tenant-1/key-1"}))
	waitState(t, c, "h1", env, events.StateDestroyed, 10*time.Second)
	if fm.isPaused(env) {
		t.Error("the snapshot of a destroyed paused environment is kept")
	}
}

// TestPauseStoresSnapshot: with --snapshot-store objects a paused environment's snapshot is
// also in the object store, named by its location; resuming it, or destroying it while
// paused, deletes that copy.
func TestPauseStoresSnapshot(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	cfg.SnapshotStore = SnapshotStoreObjects
	runAgent(t, c, cfg, fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python", Resources: events.Resources{CPUs: 1, MemoryMiB: 512}})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	store := hostrpc.NewSnapshots(c.Log.JetStream())
	stored := func() bool {
		t.Helper()
		_, err := store.Get(t.Context(), env, filepath.Join(t.TempDir(), "s"), 1<<20)
		if err != nil && !errors.Is(err, hostrpc.ErrSnapshotNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	pause := func() {
		t.Helper()
		var paused hostrpc.PauseResult
		if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, &paused); herr != nil {
			t.Fatal(herr)
		}
		if paused.Location != "objects:"+env || !stored() {
			t.Fatalf("pause result %+v; stored %v", paused, stored())
		}
	}
	pause()
	if herr := call(t, c.NC, "h1", hostrpc.OpResume, hostrpc.EnvRequest{Env: env}, nil); herr != nil {
		t.Fatal(herr)
	}
	if stored() {
		t.Error("the stored snapshot of a resumed environment is kept")
	}
	pause()
	appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvDestroyRequested, events.DestroyRequested{By: "tenant-1/key-1"}))
	waitState(t, c, "h1", env, events.StateDestroyed, 10*time.Second)
	if stored() {
		t.Error("the stored snapshot of a destroyed paused environment is kept")
	}
}

// TestTTLPausesWhenAsked: an environment created with on_timeout pause is paused, not
// destroyed, once idle past its timeout.
func TestTTLPausesWhenAsked(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	runAgent(t, c, cfg, fm)
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{TTLSeconds: 1, OnTimeout: events.OnTimeoutPause})
	waitState(t, c, "h1", env, events.StatePaused, 15*time.Second)
	var pd events.Paused
	if err := lastOf(history(t, c, "h1", env), events.EnvPaused).DecodeData(&pd); err != nil || pd.Reason != pausedByTTL {
		t.Errorf("paused event %+v %v", pd, err)
	}
	if !fm.isPaused(env) {
		t.Error("nothing saved")
	}
}

// TestFork: a requested environment with fork_of starts as a copy of the running source (its
// files), not from the warm pool; a fork of a paused source resumes it first; a fork of an
// environment that is not on this host fails.
func TestFork(t *testing.T) {
	c := eventstest.Start(t)
	fm := newFakeMachines()
	cfg := testConfig(t, "h1")
	runAgent(t, c, cfg, fm)
	src := newEnvID()
	place(t, c, "h1", src, events.Requested{Runtime: "python"})
	waitState(t, c, "h1", src, events.StateRunning, 10*time.Second)
	if herr := call(t, c.NC, "h1", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: src, Path: "/home/sandbox/f", Content: []byte("src")}, nil); herr != nil {
		t.Fatal(herr)
	}
	fork := newEnvID()
	place(t, c, "h1", fork, events.Requested{Runtime: "python", ForkOf: src})
	waitState(t, c, "h1", fork, events.StateRunning, 10*time.Second)
	if got := string(fm.vm(fork).files["/home/sandbox/f"]); got != "src" {
		t.Fatalf("fork's file %q", got)
	}
	fm.vm(fork).files["/home/sandbox/f"] = []byte("fork")
	if got := string(fm.vm(src).files["/home/sandbox/f"]); got != "src" {
		t.Fatalf("the fork's write reached the source: %q", got)
	}
	if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: src}, nil); herr != nil {
		t.Fatal(herr)
	}
	second := newEnvID()
	place(t, c, "h1", second, events.Requested{Runtime: "python", ForkOf: src})
	waitState(t, c, "h1", second, events.StateRunning, 10*time.Second)
	if state(t, c, "h1", src) != events.StateRunning {
		t.Error("the paused source was not resumed for the fork")
	}
	orphan := newEnvID()
	place(t, c, "h1", orphan, events.Requested{Runtime: "python", ForkOf: newEnvID()})
	waitState(t, c, "h1", orphan, events.StateFailed, 10*time.Second)
	var reason events.Reason
	if err := lastOf(history(t, c, "h1", orphan), events.EnvFailed).DecodeData(&reason); err != nil || !strings.Contains(reason.Reason, "not found on host h1") {
		t.Errorf("fork of an unknown environment: %+v %v", reason, err)
	}
}

// TestResumeMoved: a paused environment stored in the object store by h1, lost with h1,
// starts on h2 as a new environment placed with resume_of: with its files, and the stored
// snapshot is deleted. A resume_of that names another tenant's environment, one that is not
// lost, or one whose snapshot stayed on its host fails the placement.
func TestResumeMoved(t *testing.T) {
	c := eventstest.Start(t)
	fm1, fm2 := newFakeMachines(), newFakeMachines()
	fm1.dir, fm2.dir = t.TempDir(), t.TempDir()
	cfg1 := testConfig(t, "h1")
	cfg1.SnapshotStore = SnapshotStoreObjects
	_, stop1 := runAgent(t, c, cfg1, fm1)
	runAgent(t, c, testConfig(t, "h2"), fm2)
	req := events.Requested{Runtime: "python", Owner: "acme", Resources: events.Resources{CPUs: 1, MemoryMiB: 512}}
	env, running := newEnvID(), newEnvID()
	place(t, c, "h1", env, req)
	place(t, c, "h1", running, req)
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)
	waitState(t, c, "h1", running, events.StateRunning, 10*time.Second)
	if herr := call(t, c.NC, "h1", hostrpc.OpWriteFile, hostrpc.WriteFileRequest{Env: env, Path: "/home/sandbox/kept", Content: []byte("k")}, nil); herr != nil {
		t.Fatal(herr)
	}
	if herr := call(t, c.NC, "h1", hostrpc.OpPause, hostrpc.EnvRequest{Env: env}, nil); herr != nil {
		t.Fatal(herr)
	}
	stop1()
	appendEnv(t, c, "h1", env, mustEvent(t, "h1", env, events.EnvLost, events.Reason{Reason: "host h1 failed"}))

	for _, tc := range []struct {
		name, of, owner, msg string
	}{
		{"another tenant's", env, "other", "no such environment of this tenant"},
		{"not lost", running, "acme", "not lost with its host"},
		{"unknown", newEnvID(), "acme", "no such environment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := newEnvID()
			r := req
			r.Owner, r.ResumeOf = tc.owner, tc.of
			place(t, c, "h2", bad, r)
			waitState(t, c, "h2", bad, events.StateFailed, 10*time.Second)
			if e, err := events.FoldEnv(history(t, c, "h2", bad)); err != nil || !strings.Contains(e.LastError, tc.msg) {
				t.Fatalf("failed with %q (%v), want %q", e.LastError, err, tc.msg)
			}
		})
	}

	moved := newEnvID()
	r := req
	r.ResumeOf = env
	place(t, c, "h2", moved, r)
	waitState(t, c, "h2", moved, events.StateRunning, 10*time.Second)
	var read hostrpc.ReadFileResult
	if herr := call(t, c.NC, "h2", hostrpc.OpReadFile, hostrpc.ReadFileRequest{Env: moved, Path: "/home/sandbox/kept"}, &read); herr != nil || string(read.Content) != "k" {
		t.Fatalf("read on the moved environment: %q %v", read.Content, herr)
	}
	if _, err := hostrpc.NewSnapshots(c.Log.JetStream()).Get(t.Context(), env, filepath.Join(t.TempDir(), "s"), 1<<20); !errors.Is(err, hostrpc.ErrSnapshotNotFound) {
		t.Errorf("stored snapshot after the move: %v, want it deleted", err)
	}
}
