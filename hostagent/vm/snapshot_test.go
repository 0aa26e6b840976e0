// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// connect opens a guest client and closes it when the test ends.
func connect(t *testing.T, mach *vm.Machine) *guestclient.Client {
	t.Helper()
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatalf("connect to %s: %v", mach.ID(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs a shell command and returns its stdout; it fails the test on an error or a
// non-zero exit.
func run(t *testing.T, c *guestclient.Client, command string) string {
	t.Helper()
	res := exec1(t, c, command)
	if res.ExitCode != 0 {
		t.Fatalf("%s: exit %d, stderr %q", command, res.ExitCode, res.Stderr)
	}
	return string(res.Stdout)
}

// counterScript starts a background process, in a session of its own (so the exec that starts
// it may end), that writes its pid once and a counter every 0.2 s into the home directory.
const counterScript = `busybox setsid sh -c 'echo $$ > pid; i=0; while :; do i=$((i+1)); echo $i > count; sleep 0.2; done' ` +
	`</dev/null >/dev/null 2>&1 & while [ ! -s count ]; do sleep 0.1; done`

// counter reads the counter process's pid and its count, and checks that it runs.
func counter(t *testing.T, c *guestclient.Client) (pid string, count int) {
	t.Helper()
	out := strings.Fields(run(t, c, `cat pid count; kill -0 $(cat pid) && echo alive`))
	if len(out) != 3 || out[2] != "alive" {
		t.Fatalf("counter: %q", out)
	}
	n, err := strconv.Atoi(out[1])
	if err != nil {
		t.Fatal(err)
	}
	return out[0], n
}

// counting checks that the counter process pid still runs and counts on from at least from.
func counting(t *testing.T, c *guestclient.Client, wantPID string, from int) {
	t.Helper()
	pid, n := counter(t, c)
	if pid != wantPID || n < from {
		t.Fatalf("counter pid %s at %d, want pid %s at %d or more (the same process, not restarted)", pid, n, wantPID, from)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, later := counter(t, c); later > n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter stuck at %d", n)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// noLeftovers checks that the VMs' shims and QEMUs are gone and that the state directory
// holds no VM.
func noLeftovers(t *testing.T, stateDir string, states ...shim.State) {
	t.Helper()
	for _, st := range states {
		for name, pid := range map[string]int{"shim": st.ShimPID, "qemu": st.QEMUPID} {
			if pid != 0 && !processGone(pid) {
				t.Errorf("%s (pid %d) still running", name, pid)
			}
		}
	}
	if left := vmFiles(t, stateDir); len(left) != 0 {
		t.Errorf("left in state dir: %v", left)
	}
}

func state(t *testing.T, mach *vm.Machine) shim.State {
	t.Helper()
	st, err := shim.ReadState(mach.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestTemplateClonesHaveFreshIdentity launches two VMs from one template (in both template
// modes): each has its own SSH host key, host name and RNG output, its clock within a second
// of the host's, and refuses the template's own key.
func TestTemplateClonesHaveFreshIdentity(t *testing.T) {
	for _, mode := range []string{vm.TemplatesShared, vm.TemplatesPrivate} {
		t.Run(mode, func(t *testing.T) {
			var stateDir string
			m := vmtest.Manager(t, func(c *vm.Config) { c.Templates, stateDir = mode, c.StateDir })
			image := vmtest.BusyboxImage(t)
			tpl, err := m.Template(testCtx(t, 3*time.Minute), vm.TemplateSpec{ImagePath: image})
			if err != nil {
				t.Fatal(err)
			}
			if (tpl.Snapshot.Memory != "") != (mode == vm.TemplatesShared) {
				t.Errorf("template memory file %q in mode %s", tpl.Snapshot.Memory, mode)
			}
			type clone struct {
				mach    *vm.Machine
				random  []byte
				host    string
				clockMS float64
			}
			var clones []clone
			for _, id := range []string{"clone-a", "clone-b"} {
				mach, err := m.Launch(testCtx(t, 3*time.Minute), vm.LaunchSpec{ID: id, ImagePath: image})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s restored in %s", id, mach.BootTime())
				c := connect(t, mach)
				res, err := c.Exec(testCtx(t, time.Minute), guestclient.ExecRequest{Command: "head -c 16 /dev/urandom"})
				if err != nil || len(res.Stdout) != 16 {
					t.Fatalf("urandom: %q %v", res.Stdout, err)
				}
				before := time.Now()
				out := strings.Fields(run(t, c, "hostname; busybox adjtimex | grep time.tv_"))
				after := time.Now()
				if len(out) != 5 {
					t.Fatalf("hostname and clock: %q", out)
				}
				sec, err1 := strconv.ParseInt(out[2], 10, 64)
				usec, err2 := strconv.ParseInt(out[4], 10, 64)
				if err1 != nil || err2 != nil {
					t.Fatalf("clock: %q", out)
				}
				mid := before.Add(after.Sub(before) / 2)
				guest := time.Unix(sec, usec*1000)
				clones = append(clones, clone{mach, res.Stdout, out[0], float64(guest.Sub(mid).Microseconds()) / 1000})
				t.Cleanup(func() { _ = mach.Stop(context.Background()) })
			}
			a, b := clones[0], clones[1]
			if a.host != "clone-a" || b.host != "clone-b" {
				t.Errorf("hostnames %q %q", a.host, b.host)
			}
			if bytes.Equal(a.mach.HostKey().Marshal(), b.mach.HostKey().Marshal()) || a.mach.HostKey() == nil {
				t.Error("clones share their SSH host key")
			}
			if wire.MarshalKey(a.mach.HostKey()) == tpl.Snapshot.HostKey {
				t.Error("clone kept the template's host key")
			}
			if bytes.Equal(a.random, b.random) {
				t.Errorf("clones read the same bytes from /dev/urandom: %x", a.random)
			}
			for _, c := range clones {
				if math.Abs(c.clockMS) > 1000 {
					t.Errorf("%s: clock %.0f ms off the host's", c.host, c.clockMS)
				}
				t.Logf("%s: clock %.1f ms off the host's", c.host, c.clockMS)
			}
			// The template's key (which every clone accepted before its new identity) is refused.
			tplKey, err := os.ReadFile(tpl.Snapshot.Path(tpl.Snapshot.Key))
			if err != nil {
				t.Fatal(err)
			}
			signer, err := ssh.ParsePrivateKey(tplKey)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := a.mach.DialSSH(testCtx(t, time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if c, err := guestclient.Dial(testCtx(t, time.Minute), conn, signer); err == nil {
				c.Close()
				t.Error("a clone accepts the template's key")
			}
			// Nor can the guest's own processes reach the SSH server that takes identity requests.
			out := run(t, connect(t, a.mach), "for a in 127.0.0.1 "+wire.GuestIP+"; do echo | timeout 3 nc $a 22; done; true")
			if strings.Contains(out, "SSH-") {
				t.Errorf("the sandbox user reached the guest's SSH server: %q", out)
			}
			var states []shim.State
			for _, c := range clones {
				states = append(states, state(t, c.mach))
				if err := c.mach.Stop(testCtx(t, time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			noLeftovers(t, stateDir, states...)
		})
	}
}

// TestPauseResumeKeepsFilesAndProcesses saves a VM with a file on its disk and a background
// counter (a pause: the VM is gone), restores it, and finds both: the same process counting on.
func TestPauseResumeKeepsFilesAndProcesses(t *testing.T) {
	var stateDir string
	m := vmtest.Manager(t, func(c *vm.Config) { stateDir = c.StateDir })
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ID: "paused", ImagePath: vmtest.BusyboxImage(t)})
	c := connect(t, mach)
	run(t, c, "echo kept > file; "+counterScript)
	pid, before := counter(t, c)
	c.Close()
	oldKey, oldState := mach.HostKey(), state(t, mach)

	snap, err := mach.Snapshot(testCtx(t, time.Minute), filepath.Join(t.TempDir(), "snap"), vm.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size, err := snap.Size()
	if err != nil || size == 0 {
		t.Fatalf("snapshot size %d %v", size, err)
	}
	t.Logf("snapshot: %d bytes in %d files, guest paused %.3f s", size, len(snap.Files()), snap.PausedSeconds)
	if mach.IsAlive() {
		t.Error("the VM still runs after a snapshot without KeepRunning")
	}
	noLeftovers(t, stateDir, oldState)

	resumed, err := m.Restore(testCtx(t, 2*time.Minute), snap, vm.LaunchSpec{ID: "paused"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resumed.Stop(context.Background()) })
	t.Logf("resumed in %s", resumed.BootTime())
	rc := connect(t, resumed)
	if got := run(t, rc, "cat file; hostname"); got != "kept\npaused\n" {
		t.Errorf("file and hostname after resume: %q", got)
	}
	counting(t, rc, pid, before)
	if bytes.Equal(oldKey.Marshal(), resumed.HostKey().Marshal()) {
		t.Error("the resumed VM kept its SSH host key")
	}
	st := state(t, resumed)
	if err := resumed.Stop(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, stateDir, st)
	// The snapshot stays usable until removed.
	if _, err := snapshot.Load(snap.Dir); err != nil {
		t.Errorf("snapshot after the restored VM stopped: %v", err)
	}
}

// TestForkDiverges snapshots a running VM that keeps running, starts a fork from the snapshot
// and a fork of the fork: each has the file and the counter process, and what one writes
// afterwards the others do not see.
func TestForkDiverges(t *testing.T) {
	var stateDir string
	m := vmtest.Manager(t, func(c *vm.Config) { stateDir = c.StateDir })
	src := vmtest.Launch(t, m, vm.LaunchSpec{ID: "source", ImagePath: vmtest.BusyboxImage(t)})
	sc := connect(t, src)
	run(t, sc, "echo shared > file; "+counterScript)
	pid, before := counter(t, sc)

	start := time.Now()
	snap, err := src.Snapshot(testCtx(t, time.Minute), filepath.Join(t.TempDir(), "fork"), vm.SnapshotOptions{KeepRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	fork, err := m.Restore(testCtx(t, 2*time.Minute), snap, vm.LaunchSpec{ID: "fork"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fork.Stop(context.Background()) })
	t.Logf("fork (save %.3f s paused, restore %s) took %s", snap.PausedSeconds, fork.BootTime(), time.Since(start))

	// The source goes on: same connection, same process, its own identity.
	counting(t, sc, pid, before)
	fc := connect(t, fork)
	if got := run(t, fc, "cat file; hostname"); got != "shared\nfork\n" {
		t.Errorf("fork: %q", got)
	}
	counting(t, fc, pid, before)
	if got := run(t, sc, "hostname"); got != "source\n" {
		t.Errorf("source hostname %q", got)
	}
	if bytes.Equal(src.HostKey().Marshal(), fork.HostKey().Marshal()) {
		t.Error("the fork has the source's host key")
	}

	// A fork of the fork: its disk has one more layer.
	run(t, fc, "echo fork > forkfile")
	snap2, err := fork.Snapshot(testCtx(t, time.Minute), filepath.Join(t.TempDir(), "fork2"), vm.SnapshotOptions{KeepRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap2.Layers) != len(snap.Layers)+1 {
		t.Errorf("fork of a fork has %d layers, want %d", len(snap2.Layers), len(snap.Layers)+1)
	}
	fork2, err := m.Restore(testCtx(t, 2*time.Minute), snap2, vm.LaunchSpec{ID: "fork2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fork2.Stop(context.Background()) })
	f2c := connect(t, fork2)

	run(t, sc, "echo source > sourcefile")
	run(t, f2c, "echo fork2 > fork2file")
	for _, tt := range []struct {
		c    *guestclient.Client
		name string
		want string
	}{
		{sc, "source", "file sourcefile"},
		{fc, "fork", "file forkfile"},
		{f2c, "fork2", "file fork2file forkfile"},
	} {
		if got := strings.Join(strings.Fields(run(t, tt.c, "ls *file")), " "); got != tt.want {
			t.Errorf("%s sees %q, want %q", tt.name, got, tt.want)
		}
	}
	var states []shim.State
	for _, mach := range []*vm.Machine{src, fork, fork2} {
		states = append(states, state(t, mach))
		if err := mach.Stop(testCtx(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	noLeftovers(t, stateDir, states...)
}

// TestRestoreRefusesBadSnapshots: a broken or mismatched snapshot fails with an error that
// names what is wrong and the stage, and leaves nothing behind.
func TestRestoreRefusesBadSnapshots(t *testing.T) {
	var stateDir string
	m := vmtest.Manager(t, func(c *vm.Config) { stateDir = c.StateDir })
	image := vmtest.BusyboxImage(t)
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: image})
	good, err := mach.Snapshot(testCtx(t, time.Minute), filepath.Join(t.TempDir(), "good"), vm.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// copyOf is a real copy of the good snapshot (its files are hard links of each other).
	copyOf := func(t *testing.T) snapshot.Snapshot {
		dir := filepath.Join(t.TempDir(), "copy")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range good.Files() {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s, err := snapshot.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	otherImage := filepath.Join(t.TempDir(), "other.ext4")
	if err := os.WriteFile(otherImage, []byte("too small"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		spoil func(t *testing.T, s *snapshot.Snapshot, spec *vm.LaunchSpec)
		want  []string
	}{
		{"corrupt state", func(t *testing.T, s *snapshot.Snapshot, _ *vm.LaunchSpec) {
			f, err := os.OpenFile(s.Path(s.State), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, []string{"restore:", "resume: load saved state", "qemu exited"}},
		{"truncated state", func(t *testing.T, s *snapshot.Snapshot, _ *vm.LaunchSpec) {
			if err := os.Truncate(s.Path(s.State), 1000); err != nil {
				t.Fatal(err)
			}
		}, []string{"restore:", "resume: load saved state"}},
		{"missing layer", func(t *testing.T, s *snapshot.Snapshot, _ *vm.LaunchSpec) {
			if err := os.Remove(s.Path(s.Layers[0])); err != nil {
				t.Fatal(err)
			}
		}, []string{"restore: invalid snapshot", snapshot.LayerFile(0)}},
		{"corrupt layer", func(t *testing.T, s *snapshot.Snapshot, _ *vm.LaunchSpec) {
			if err := os.WriteFile(s.Path(s.Layers[0]), []byte("not qcow2"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"restore:", "start: start qemu", "not in qcow2 format"}},
		{"bad manifest", func(t *testing.T, s *snapshot.Snapshot, _ *vm.LaunchSpec) {
			s.Version = 99
		}, []string{"manifest version 99"}},
		{"other image", func(t *testing.T, _ *snapshot.Snapshot, spec *vm.LaunchSpec) {
			spec.ImagePath = otherImage
		}, []string{"base image", "bytes"}},
		{"other size", func(t *testing.T, _ *snapshot.Snapshot, spec *vm.LaunchSpec) {
			spec.MemoryMiB = 1024
		}, []string{"memory 1024 differs"}},
		{"other hypervisor", func(t *testing.T, s *snapshot.Snapshot, _ *vm.LaunchSpec) {
			s.Hypervisor = "QEMU 1.0"
		}, []string{`snapshot made by "QEMU 1.0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := copyOf(t)
			spec := vm.LaunchSpec{ID: "bad"}
			tt.spoil(t, &s, &spec)
			_, err := m.Restore(testCtx(t, 2*time.Minute), s, spec)
			if err == nil {
				t.Fatal("restore succeeded")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", firstLine(err), want)
				}
			}
			t.Logf("error: %s", firstLine(err))
			noLeftovers(t, stateDir)
		})
	}
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// TestTemplateRebuiltWhenInputsChange: a template is made once, found again, and made anew
// when its image or the guest init changes (the replaced one is deleted).
func TestTemplateRebuiltWhenInputsChange(t *testing.T) {
	var cfg vm.Config
	m := vmtest.Manager(t, func(c *vm.Config) { cfg = *c })
	image := filepath.Join(reachableDir(t), "image.ext4") // QEMU runs as another uid when the test is root
	copyFile(t, vmtest.BusyboxImage(t), image)
	spec := vm.TemplateSpec{ImagePath: image, MemoryMiB: 256}
	build := func(m *vm.Manager) vm.Template {
		t.Helper()
		tpl, err := m.Template(testCtx(t, 3*time.Minute), spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(tpl.Dir); os.Remove(tpl.Dir + ".lock") })
		return tpl
	}
	first := build(m)
	if !first.Built {
		t.Fatal("first template not built")
	}
	t.Logf("template built in %s", first.BuildTime)
	if again := build(m); again.Built || again.Key != first.Key {
		t.Errorf("unchanged inputs: built %v, key %s, want %s", again.Built, again.Key, first.Key)
	}
	// Another Manager (a restarted agent) finds it on disk.
	m2 := vmtest.Manager(t, func(c *vm.Config) { *c = cfg })
	if again := build(m2); again.Built || again.Key != first.Key {
		t.Errorf("new manager: built %v, key %s", again.Built, again.Key)
	}

	// A rebuilt image (a new file in its place).
	copyFile(t, vmtest.BusyboxImage(t), image+".new")
	if err := os.Rename(image+".new", image); err != nil {
		t.Fatal(err)
	}
	second := build(m)
	if !second.Built || second.Key == first.Key {
		t.Fatalf("new image: built %v, key %s (first %s)", second.Built, second.Key, first.Key)
	}
	if _, err := os.Stat(first.Dir); !os.IsNotExist(err) {
		t.Errorf("replaced template %s not removed: %v", first.Dir, err)
	}

	// A changed guest init (bytes appended to the binary still run).
	init := filepath.Join(t.TempDir(), "waggle-init")
	copyFile(t, cfg.InitBinary, init)
	f, err := os.OpenFile(init, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d", time.Now().UnixNano())
	f.Close()
	m3 := vmtest.Manager(t, func(c *vm.Config) { *c = cfg; c.InitBinary = init })
	third := build(m3)
	if !third.Built || third.Key == second.Key {
		t.Fatalf("new init: built %v, key %s (before %s)", third.Built, third.Key, second.Key)
	}
	// The new template works.
	mach := vmtest.Launch(t, m3, vm.LaunchSpec{ImagePath: image, MemoryMiB: 256})
	if got := run(t, connect(t, mach), "echo ok"); got != "ok\n" {
		t.Errorf("exec in a VM of the new template: %q", got)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
