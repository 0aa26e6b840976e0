// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

func TestArgs(t *testing.T) {
	spec := hypervisor.Spec{Dir: "/d", Kernel: "/k", Initrd: "/i", Disk: "/d/disk.qcow2", Backing: []string{"/base.ext4"},
		NetSocket: "/d/net.sock", CPUs: 2, MemoryMiB: 256, Accel: "tcg", TSCKHz: 2100000, Cmdline: "waggle.hostname=x"}
	args := qemu.Args(spec)
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-M microvm,memory-backend=ram", "-accel tcg -cpu max", "-m 256", "-smp 2", "-nodefaults", "-no-user-config", "-no-reboot",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-object memory-backend-ram,id=ram,size=256M",
		"-qmp unix:/d/qemu/qmp.sock,server=on,wait=off",
		"-add-fd fd=3,set=1 -blockdev driver=file,node-name=fd0,filename=/dev/fdset/1,read-only=on -blockdev driver=raw,node-name=d0,file=fd0,read-only=on",
		"-blockdev driver=file,node-name=fdisk,filename=/d/disk.qcow2,discard=unmap -blockdev driver=qcow2,node-name=disk,file=fdisk,discard=unmap,backing=d0",
		"-device virtio-blk-device,drive=disk", "addr.path=/d/net.sock",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q: %s", want, joined)
		}
	}
	i := slices.Index(args, "-append")
	if i < 0 || !strings.Contains(args[i+1], "tsc_early_khz=2100000") || !strings.HasSuffix(args[i+1], "waggle.hostname=x") {
		t.Errorf("cmdline %q", args[i+1])
	}
	if strings.Contains(joined, "-incoming") {
		t.Errorf("a boot has -incoming: %s", joined)
	}

	spec.Accel, spec.TSCKHz = "kvm", 0
	joined = strings.Join(qemu.Args(spec), " ")
	if !strings.Contains(joined, "-accel kvm -cpu host") || strings.Contains(joined, "tsc_early_khz") {
		t.Errorf("kvm args: %s", joined)
	}

	spec.SharedMemory = true
	if joined = strings.Join(qemu.Args(spec), " "); !strings.Contains(joined, "-object memory-backend-file,id=ram,size=256M,mem-path=/d/qemu/memory,share=on") {
		t.Errorf("shared memory: %s", joined)
	}

	// A restore from a template: two layers, the template memory and the state as inherited
	// descriptors 3-4, 5 and 6, and no kernel.
	spec.SharedMemory = false
	spec.Backing = append(spec.Backing, "/layer.qcow2")
	spec.Incoming, spec.TemplateMemory = os.Stdin, os.Stdin
	joined = strings.Join(qemu.Args(spec), " ")
	for _, want := range []string{
		"-object memory-backend-file,id=ram,size=256M,mem-path=/proc/self/fd/5,share=off",
		"-add-fd fd=4,set=2 -blockdev driver=file,node-name=fd1,filename=/dev/fdset/2,read-only=on -blockdev driver=qcow2,node-name=d1,file=fd1,read-only=on,backing=d0",
		"node-name=disk,file=fdisk,discard=unmap,backing=d1", "-incoming defer",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("restore args lack %q: %s", want, joined)
		}
	}
	for _, unwanted := range []string{"-kernel", "-initrd", "-append"} {
		if strings.Contains(joined, unwanted) {
			t.Errorf("restore args have %s: %s", unwanted, joined)
		}
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
