// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

func TestArgs(t *testing.T) {
	spec := hypervisor.Spec{Dir: "/d", Kernel: "/k", Initrd: "/i", Disk: "/d/disk.qcow2", NetSocket: "/d/net.sock",
		CPUs: 2, MemoryMiB: 256, Accel: "tcg", TSCKHz: 2100000, Cmdline: "waggle.hostname=x"}
	args := qemu.Args(spec)
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-M microvm", "-accel tcg -cpu max", "-m 256", "-smp 2", "-nodefaults", "-no-user-config", "-no-reboot",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-qmp unix:/d/qemu/qmp.sock,server=on,wait=off",
		"file=/d/disk.qcow2,format=qcow2", "addr.path=/d/net.sock",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q: %s", want, joined)
		}
	}
	i := slices.Index(args, "-append")
	if i < 0 || !strings.Contains(args[i+1], "tsc_early_khz=2100000") || !strings.HasSuffix(args[i+1], "waggle.hostname=x") {
		t.Errorf("cmdline %q", args[i+1])
	}
	spec.Accel, spec.TSCKHz = "kvm", 0
	joined = strings.Join(qemu.Args(spec), " ")
	if !strings.Contains(joined, "-accel kvm -cpu host") || strings.Contains(joined, "tsc_early_khz") {
		t.Errorf("kvm args: %s", joined)
	}
}

// TestProbeKVMIsBounded: the probe answers within its timeout, whatever this host's KVM is
// (on kvm-pvm hosts it must say unusable).
func TestProbeKVMIsBounded(t *testing.T) {
	k := vmtest.Kernel(t)
	const timeout = 3 * time.Second
	start := time.Now()
	err := qemu.ProbeKVM(context.Background(), "qemu-system-x86_64", k.Vmlinux, timeout, vmtest.QEMUCredential())
	took := time.Since(start)
	t.Logf("probe: %v after %s", err, took)
	if err != nil && !errors.Is(err, qemu.ErrKVMUnusable) {
		t.Errorf("probe error %v does not wrap ErrKVMUnusable", err)
	}
	if took > timeout+2*time.Second {
		t.Errorf("probe took %s, limit %s", took, timeout)
	}
}
