// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package hypervisor defines what a VM backend provides (prepare a root disk, start a VM, a
// handle to stop it) so that QEMU, and later libkrun or Firecracker, fit behind one interface.
package hypervisor

import (
	"context"
	"io"
)

// Backend starts microVMs.
type Backend interface {
	// Name names the backend in logs and state files ("qemu").
	Name() string
	// PrepareDisk creates the VM's writable root disk in dir on top of the read-only base
	// image, limited to sizeMiB, and returns its path.
	PrepareDisk(ctx context.Context, base, dir string, sizeMiB int) (string, error)
	// Start boots a VM. On error nothing of it is left running.
	Start(ctx context.Context, spec Spec) (Handle, error)
}

// Handle is a started VM.
type Handle interface {
	// ID identifies the VM process (for QEMU, its pid).
	ID() string
	// Stop ends the VM; calling it again, or after the VM ended by itself, returns nil.
	Stop(ctx context.Context) error
	// IsAlive reports whether the VM is still running.
	IsAlive() bool
	// Done is closed when the VM has ended.
	Done() <-chan struct{}
}

// Spec is everything needed to boot one VM. All paths are absolute.
type Spec struct {
	// Name is the VM's name (hostname, cgroup and log name).
	Name string `json:"name"`
	// Dir is the VM's private directory (0700); backends put their sockets there.
	Dir string `json:"dir"`
	// Kernel is the uncompressed vmlinux; Initrd the initramfs.
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	// Cmdline is appended to the backend's own kernel arguments.
	Cmdline string `json:"cmdline"`
	// Disk is the root disk from PrepareDisk; it becomes /dev/vda.
	Disk string `json:"disk"`
	// NetSocket is a listening unix socket that carries the NIC's Ethernet frames, each
	// prefixed with its 4-byte big-endian length.
	NetSocket string `json:"net_socket"`
	// CPUs and MemoryMiB size the VM.
	CPUs      int `json:"cpus"`
	MemoryMiB int `json:"memory_mib"`
	// Accel is "kvm" or "tcg" (resolved, not "auto").
	Accel string `json:"accel"`
	// TSCKHz, when not 0, is passed as tsc_early_khz (needed under TCG, which otherwise
	// sometimes hangs calibrating the TSC).
	TSCKHz int `json:"tsc_khz,omitempty"`
	// UID and GID, when UID is not 0, are the unprivileged user and group the hypervisor runs
	// as, with the supplementary Groups (such as the group of /dev/kvm). A backend running as
	// root refuses a Spec without them: the hypervisor never runs as root.
	UID    int      `json:"uid,omitempty"`
	GID    int      `json:"gid,omitempty"`
	Groups []uint32 `json:"groups,omitempty"`
	// Console receives the guest's serial console.
	Console io.Writer `json:"-"`
}
