// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newTestReaper(t *testing.T, restrict func() error) *reaper {
	t.Helper()
	r := newReaper()
	if err := r.startSpawner(restrict); err != nil {
		t.Fatalf("startSpawner: %v", err)
	}
	t.Cleanup(r.stopSpawner)
	return r
}

// waitZombie waits until pid has exited and is waiting to be reaped by this process.
func waitZombie(t *testing.T, r *reaper, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !r.isZombieChild(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a zombie", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReaperLeavesOwnedChildren(t *testing.T) {
	r := newTestReaper(t, func() error { return nil })
	owned := exec.Command("sh", "-c", "exit 3")
	if err := r.Start(owned); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("true") // started behind the reaper's back, like a re-parented orphan
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	waitZombie(t, r, owned.Process.Pid)
	waitZombie(t, r, orphan.Process.Pid)
	r.reap()

	var ee *exec.ExitError
	if err := owned.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("owned child: Wait = %v, want exit status 3", err)
	}
	r.Done(owned)
	if _, err := os.Stat("/proc/" + strconv.Itoa(orphan.Process.Pid)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan not reaped: %v", err)
	}
	if len(r.owned) != 0 {
		t.Fatalf("owned set not empty: %v", r.owned)
	}
}

func TestSpawnerRestrictsChildren(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping from the bounding set needs CAP_SETPCAP")
	}
	last, err := lastCap()
	if err != nil {
		t.Fatal(err)
	}
	r := newTestReaper(t, func() error { return restrictThread(last) })
	for range 3 { // every child, not just the first
		var out strings.Builder
		cmd := exec.Command("grep", "-E", "^(CapBnd|NoNewPrivs):", "/proc/self/status")
		cmd.Stdout = &out
		if err := r.Start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		r.Done(cmd)
		if want := "CapBnd:\t0000000000000000\nNoNewPrivs:\t1\n"; out.String() != want {
			t.Fatalf("child status %q, want %q", out.String(), want)
		}
	}
	// A child forked elsewhere in the process is not restricted.
	out, err := exec.Command("grep", "^NoNewPrivs:", "/proc/self/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "NoNewPrivs:\t0\n" {
		t.Fatalf("a child not started by the spawner has %q: the restriction leaked off its thread", out)
	}
}
