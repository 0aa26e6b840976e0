// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/cgroup"
	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// vmDir is a VM directory with the files Start hands to QEMU's user.
func vmDir(t *testing.T) hypervisor.Spec {
	t.Helper()
	dir := t.TempDir()
	spec := hypervisor.Spec{Name: "t", Dir: dir, Disk: filepath.Join(dir, "disk.qcow2"), NetSocket: filepath.Join(dir, "net.sock"),
		Kernel: "/nonexistent/vmlinux", Initrd: "/nonexistent/initrd", CPUs: 1, MemoryMiB: 128, Accel: "tcg"}
	for _, f := range []string{spec.Disk, spec.NetSocket} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if cred := vmtest.QEMUCredential(); cred != nil {
		spec.UID, spec.GID = int(cred.Uid), int(cred.Gid)
	}
	return spec
}

// TestStartRefusesRoot: a backend running as root starts no QEMU for a spec without an
// unprivileged uid, and neither does the KVM probe without a credential.
func TestStartRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	spec := vmDir(t)
	spec.UID, spec.GID = 0, 0
	if _, err := qemu.New(qemu.Config{Binary: "true"}).Start(context.Background(), spec); !errors.Is(err, qemu.ErrRoot) {
		t.Errorf("start as root: %v, want ErrRoot", err)
	}
	if err := qemu.ProbeKVM(context.Background(), "true", "/nonexistent", time.Second, nil); !errors.Is(err, qemu.ErrRoot) {
		t.Errorf("probe as root: %v, want ErrRoot", err)
	}
}

// TestStartFailsWithoutItsCgroup: a VM whose configured cgroup cannot be made does not start
// (it used to start without limits), and the error says why.
func TestStartFailsWithoutItsCgroup(t *testing.T) {
	spec := vmDir(t)
	b := qemu.New(qemu.Config{Binary: "true", CgroupRoot: filepath.Join(t.TempDir(), "waggle")})
	h, err := b.Start(context.Background(), spec)
	if !errors.Is(err, cgroup.ErrUnavailable) {
		if h != nil {
			_ = h.Stop(context.Background())
		}
		t.Fatalf("start without its cgroup: %v, want ErrUnavailable", err)
	}
}
