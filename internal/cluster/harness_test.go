// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
	"github.com/waggle-dev/waggle/internal/progress"
	"github.com/waggle-dev/waggle/projector"
)

// testDirPrefix names the directories of test clusters in os.TempDir.
const testDirPrefix = "wcl"

// requireRoot skips (or, with WAGGLE_REQUIRE_VM=1, fails) a test that needs root: the
// partition helper makes network namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(vmtest.RequireEnv) == "1" {
		t.Fatalf("the cluster tests need root (network namespaces for the partition), and %s=1", vmtest.RequireEnv)
	}
	t.Skip("the cluster tests need root (network namespaces for the partition)")
}

// testConfig is a cluster for the tests: small host agents under TCG, host3 in a network
// namespace of its own, a short directory (VM sockets live in it).
func testConfig(t *testing.T) Config {
	t.Helper()
	vmtest.Require(t)
	requireRoot(t)
	vmtest.Image(t, "shell")
	bins := vmtest.Build(t)
	vmtest.Kernel(t)
	reapAbandoned(t)
	dir := vmtest.OwnedDir(t, testDirPrefix)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster directory kept for a look: %s (logs in logs/)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	cfg := DefaultConfig()
	cfg.Dir, cfg.Waggle, cfg.Init, cfg.CacheDir = dir, bins.Waggle, bins.Init, vmtest.CacheDir(t)
	cfg.NetnsHosts, cfg.Accel = 1, "tcg"
	// Under TCG on two cores, one boot at a time per host boots fastest; small VMs.
	cfg.HostAgentArgs = []string{"--capacity-memory", "3072", "--capacity-cpus", "4", "--max-environments", "8",
		"--max-concurrent-boots", "1", "--log-level", "debug"}
	cfg.Progress = progress.New(testLog{t})
	return cfg
}

// upForTest starts cfg's cluster; when the test ends it is stopped, and the test fails if a VM
// or a process of it is left.
func upForTest(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	t.Cleanup(func() { downForTest(t, c) })
	return c
}

// downForTest stops c, stops any VM left (failing the test for it unless its host agents
// keep their VMs) and checks that no process of the cluster runs.
func downForTest(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Down(ctx); err != nil {
		t.Errorf("cluster down: %v", err)
	}
	left, err := c.LeftoverVMs(ctx)
	if err != nil {
		t.Errorf("look for VMs left: %v", err)
	}
	keep := c.cfg.Drain == hostagent.DrainKeep
	for _, l := range left {
		if !keep {
			t.Errorf("VM %s left on %s", l.Machine.ID(), l.Host)
		}
	}
	// Kept or not, the test leaves no VM behind.
	_ = stopVMs(ctx, left)
	waitUntil(t, 30*time.Second, "no QEMU of the cluster's directory", func() (bool, string) {
		procs := processesIn(c.Dir(), "qemu-system")
		return len(procs) == 0, fmt.Sprint(procs)
	})
	if procs := processesIn(c.Dir(), "waggle"); len(procs) > 0 {
		t.Errorf("processes of the cluster still run: %v", procs)
		for _, p := range procs {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// processesIn lists the pids of processes whose command line mentions both dir and name.
func processesIn(dir, name string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) && bytes.Contains(cmdline, []byte(name)) && !gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// reapAbandoned stops the clusters (and their VMs) of test processes that died without their
// cleanups (a test timeout, a kill).
func reapAbandoned(t *testing.T) {
	for dir, pid := range vmtest.Abandoned(testDirPrefix) {
		if c, err := Open(dir, nil); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_ = c.Down(ctx)
			left, _ := c.LeftoverVMs(ctx)
			_ = stopVMs(ctx, left)
			cancel()
		}
		for _, p := range processesIn(dir, "") {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		t.Logf("stopped the cluster %s left by dead test process %d", dir, pid)
		os.RemoveAll(dir)
	}
}

// testLog writes the cluster's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// auditVerify runs `waggle audit verify` against the cluster with the operator's credential.
func auditVerify(t *testing.T, c *Cluster) {
	t.Helper()
	cmd := exec.Command(c.cfg.Waggle, "audit", "verify", "--nats-url", c.NATSURLs(), "--nats-creds", c.CredsFile("operator", ""))
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("waggle audit verify: %v\n%s", err, out)
	}
	t.Logf("waggle audit verify: %s", strings.TrimSpace(lastLine(string(out))))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// viewConverges waits until the live view reflects the whole stream and checks that its hash
// equals that of a fold of the whole log (a full replay); it returns both.
func viewConverges(t *testing.T, c *Cluster) (live, replay string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reader, err := projector.NewReader(c.Log().JetStream())
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the live view at the stream's last sequence, equal to a full replay", func() (bool, string) {
		v, err := reader.View(ctx)
		if err != nil {
			return false, err.Error()
		}
		folded, _, err := projector.Fold(ctx, c.Log(), nil)
		if err != nil {
			return false, err.Error()
		}
		if v.Seq != folded.Seq {
			return false, fmt.Sprintf("view at seq %d, log at %d", v.Seq, folded.Seq)
		}
		// The view's buckets are read from any replica (direct get), and one that is catching up
		// (a node restarted after a kill) may answer with older values for a while.
		live, replay = v.Hash(), folded.Hash()
		return live == replay, fmt.Sprintf("view at seq %d: live hash %s, full replay %s", v.Seq, live, replay)
	})
	return live, replay
}

// snapshot is the id of every event of the stream up to its last sequence.
func snapshot(t *testing.T, c *Cluster) map[uint64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := map[uint64]string{}
	if err := c.Log().Replay(ctx, events.Position{}, nil, func(ev *events.Event) error {
		ids[ev.Seq] = ev.ID
		return nil
	}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	return ids
}

// checkKept checks that every event of an earlier snapshot is still at its sequence; it
// returns how many were checked.
func checkKept(t *testing.T, c *Cluster, before map[uint64]string) int {
	t.Helper()
	after := snapshot(t, c)
	lost := 0
	for seq, id := range before {
		if after[seq] != id {
			lost++
			if lost <= 10 {
				t.Errorf("event %d (%s) is %q now", seq, id, after[seq])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d events acknowledged before are not in the stream any more", lost, len(before))
	}
	return len(before)
}

// firstEvent waits for the first event on subject stored after sequence since and returns
// when it was stored.
func firstEvent(t *testing.T, c *Cluster, subject string, since uint64, timeout time.Duration) *events.Event {
	t.Helper()
	var got *events.Event
	waitUntil(t, timeout, subject+" after seq "+strconv.FormatUint(since, 10), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := c.Log().Scan(ctx, subject, since+1, func(ev *events.Event) error {
			if got == nil {
				got = ev
			}
			return nil
		})
		return got != nil, fmt.Sprint(err)
	})
	return got
}

// lastSeq is the stream's last sequence.
func lastSeq(t *testing.T, c *Cluster) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seq, err := c.Log().LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}
