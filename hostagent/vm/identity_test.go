// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/cgroup"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/uids"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// reachableDir is a fresh directory that others may search (QEMU's uids must reach below it).
func reachableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// configIn is a Manager config over dir that NewManager accepts without booting anything.
func configIn(t *testing.T, dir string, logs *bytes.Buffer) vm.Config {
	t.Helper()
	cfg := vm.DefaultConfig()
	cfg.StateDir, cfg.CacheDir = filepath.Join(dir, "state"), dir
	cfg.WaggleBinary, cfg.InitBinary = "/bin/true", "/bin/true"
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	return cfg
}

// TestQEMUUserConfig: the choice of who QEMU runs as, and of cgroups, is settled when the
// Manager starts; a choice that cannot work is a clear error then, never a silent fallback at
// boot.
func TestQEMUUserConfig(t *testing.T) {
	root := os.Geteuid() == 0
	cgroupErr := cgroup.Setup(cgroup.DefaultRoot)
	for _, tt := range []struct {
		name    string
		mutate  func(*vm.Config)
		private bool   // the state directory's parent is 0700
		wantErr string // "" for none
		skip    bool
	}{
		{name: "defaults", mutate: func(*vm.Config) {}},
		{name: "missing qemu user", mutate: func(c *vm.Config) { c.QEMUUser = "waggle-no-such-user" },
			wantErr: `qemu user "waggle-no-such-user"`, skip: !root},
		{name: "root as qemu user", mutate: func(c *vm.Config) { c.QEMUUser = "root" }, wantErr: "is root", skip: !root},
		{name: "no uid range as root", mutate: func(c *vm.Config) { c.QEMUUIDs = uids.Range{} },
			wantErr: "QEMU would run as root: give a uid range (--qemu-uid-range) or an unprivileged user (--qemu-user)", skip: !root},
		{name: "qemu user without root", mutate: func(c *vm.Config) { c.QEMUUser = "nobody" }, wantErr: "needs root", skip: root},
		{name: "state dir out of reach", mutate: func(*vm.Config) {}, private: true, wantErr: "not searchable by others; chmod o+x it", skip: !root},
		{name: "cgroups on without cgroup v2", mutate: func(c *vm.Config) { c.Cgroups = vm.CgroupsOn },
			wantErr: "cgroup v2 with the cpu and memory controllers is not available", skip: !errors.Is(cgroupErr, cgroup.ErrUnavailable)},
		{name: "cgroups off", mutate: func(c *vm.Config) { c.Cgroups = vm.CgroupsOff }},
		{name: "bad cgroups mode", mutate: func(c *vm.Config) { c.Cgroups = "maybe" }, wantErr: `cgroups "maybe"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("not for this host or user")
			}
			dir := reachableDir(t)
			var logs bytes.Buffer
			cfg := configIn(t, dir, &logs)
			if tt.private {
				private := filepath.Join(dir, "private")
				if err := os.Mkdir(private, 0o700); err != nil {
					t.Fatal(err)
				}
				cfg.StateDir = filepath.Join(private, "state")
			}
			tt.mutate(&cfg)
			_, err := vm.NewManager(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewManager: %v, want %q", err, tt.wantErr)
			}
		})
	}
	// A host without cgroup v2 is reported once, when the Manager starts, in auto mode.
	if errors.Is(cgroupErr, cgroup.ErrUnavailable) {
		var logs bytes.Buffer
		if _, err := vm.NewManager(configIn(t, reachableDir(t), &logs)); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(logs.String(), "VMs run without CPU and memory limits"); n != 1 {
			t.Errorf("%d reports of the missing cgroup v2, want 1: %s", n, logs.String())
		}
	}
}

// qemuIDs are the uid and gid lines of a process's status.
func qemuIDs(t *testing.T, pid int) (uid, gid string) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid = strings.Join(strings.Fields(v), " ")
		}
		if v, ok := strings.CutPrefix(line, "Gid:"); ok {
			gid = strings.Join(strings.Fields(v), " ")
		}
	}
	return uid, gid
}

// as runs argv as uid (and the same gid) and reports whether it succeeded, with its output.
func as(uid int, argv ...string) (bool, string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	return err == nil, string(out)
}

// TestQEMUUIDs boots VMs as root with the default uid range: each VM's QEMU runs as a uid and
// gid of its own from the range (all four ids of the process), two VMs never share one, a
// VM's uid opens its own disk but nothing of another VM's directory, and the claims survive a
// restart of the Manager (the next VM gets a third uid) and are given back on stop.
func TestQEMUUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: an unprivileged Manager runs QEMU as itself")
	}
	var cfg vm.Config
	m := vmtest.Manager(t, func(c *vm.Config) { cfg = *c })
	if cfg.QEMUUIDs != uids.DefaultRange() {
		t.Fatalf("default uid range as root: %v, want %v", cfg.QEMUUIDs, uids.DefaultRange())
	}
	image := vmtest.BusyboxImage(t)
	a := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: image})
	b := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: image})
	uidOf := func(mach *vm.Machine) (int, int) {
		t.Helper()
		spec, err := shim.ReadSpec(mach.Dir())
		if err != nil {
			t.Fatal(err)
		}
		st, err := shim.ReadState(mach.Dir())
		if err != nil {
			t.Fatal(err)
		}
		r := cfg.QEMUUIDs
		if spec.VM.UID < int(r.First) || spec.VM.UID > int(r.Last) || spec.VM.GID != spec.VM.UID {
			t.Fatalf("vm %s: uid %d gid %d, want one uid and gid of %s", mach.ID(), spec.VM.UID, spec.VM.GID, r)
		}
		want := strings.Repeat(strconv.Itoa(spec.VM.UID)+" ", 4)
		if uid, gid := qemuIDs(t, st.QEMUPID); uid+" " != want || gid+" " != want {
			t.Fatalf("vm %s: qemu %d runs as uids %q gids %q, want all %d", mach.ID(), st.QEMUPID, uid, gid, spec.VM.UID)
		}
		return spec.VM.UID, st.QEMUPID
	}
	uidA, _ := uidOf(a)
	uidB, _ := uidOf(b)
	if uidA == uidB {
		t.Fatalf("two VMs share uid %d", uidA)
	}
	t.Logf("vm %s runs as %d, vm %s as %d", a.ID(), uidA, b.ID(), uidB)

	// Ownership: QEMU's uid owns what it opens; the rest is the shim's (root).
	for name, want := range map[string]struct {
		mode os.FileMode
		uid  int
	}{
		".": {0o711 | os.ModeDir, 0}, "id_ed25519": {0o600, 0}, shim.ConsoleLog: {0o600, 0},
		"disk.qcow2": {0o600, uidA}, shim.NetSock: {0o600 | os.ModeSocket, uidA}, "qemu": {0o700 | os.ModeDir, uidA},
	} {
		fi, err := os.Stat(filepath.Join(a.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if owner := int(fi.Sys().(*syscall.Stat_t).Uid); fi.Mode() != want.mode || owner != want.uid {
			t.Errorf("%s: mode %v owner %d, want %v %d", name, fi.Mode(), owner, want.mode, want.uid)
		}
	}
	// Isolation: B's uid reaches nothing of A's; each uid reads its own disk.
	for _, own := range []struct {
		uid int
		dir string
	}{{uidA, a.Dir()}, {uidB, b.Dir()}} {
		if ok, out := as(own.uid, "head", "-c", "3", filepath.Join(own.dir, "disk.qcow2")); !ok || out != "QFI" {
			t.Errorf("uid %d reading its own disk: %v %q", own.uid, ok, out)
		}
	}
	for _, argv := range [][]string{
		{"head", "-c", "3", filepath.Join(a.Dir(), "disk.qcow2")},
		{"ls", a.Dir()},
		{"ls", filepath.Join(a.Dir(), "qemu")},
		{"cat", filepath.Join(a.Dir(), "id_ed25519")},
		{"cat", filepath.Join(a.Dir(), shim.ConsoleLog)},
		{"test", "-w", filepath.Join(a.Dir(), shim.NetSock)},
		{"test", "-w", filepath.Join(a.Dir(), "qemu", "qmp.sock")},
	} {
		if ok, out := as(uidB, argv...); ok {
			t.Errorf("uid %d (vm %s) can %q in vm %s's directory: %q", uidB, b.ID(), argv, a.ID(), out)
		}
	}
	c, err := a.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res := exec1(t, c, "echo ok"); string(res.Stdout) != "ok\n" {
		t.Errorf("exec: %q", res.Stdout)
	}

	// A restarted Manager adopts both and gives a new VM a third uid.
	m2, err := vm.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := m2.Scan(testCtx(t, time.Minute))
	if err != nil || len(adopted) != 2 {
		t.Fatalf("scan after restart: %d VMs, %v", len(adopted), err)
	}
	d := vmtest.Launch(t, m2, vm.LaunchSpec{ImagePath: image})
	if uidD, _ := uidOf(d); uidD == uidA || uidD == uidB {
		t.Fatalf("vm after restart got uid %d, already vm %s's or %s's", uidD, a.ID(), b.ID())
	}
	for _, mach := range append(adopted, d) {
		if err := mach.Stop(testCtx(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	claims, err := filepath.Glob(filepath.Join(cfg.StateDir, "uids", "[0-9]*"))
	if err != nil || len(claims) != 0 {
		t.Fatalf("uid claims left after every VM stopped: %v, %v", claims, err)
	}
}
