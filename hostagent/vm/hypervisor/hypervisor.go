// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package hypervisor defines what a VM backend provides, so that QEMU, and later libkrun or
// Firecracker, fit behind one interface: prepare a writable disk over a read-only chain, boot a
// VM or start one from saved state, and, through the handle, save a running VM (memory, device
// state and a frozen disk layer), resume and stop it. The per-VM shim is the only caller: it
// picks the backend by the name in its spec.
package hypervisor

import (
	"context"
	"io"
	"os"
	"time"
)

// Backend starts microVMs.
type Backend interface {
	// Name names the backend in specs, snapshots and logs ("qemu").
	Name() string
	// Version identifies the hypervisor build (saved state is only loaded by the same one).
	Version(ctx context.Context) (string, error)
	// PrepareDisk creates a writable disk at path on top of backing (read-only files, the
	// base image first, then layers frozen by saves), sized sizeMiB but never smaller than
	// the base image.
	PrepareDisk(ctx context.Context, path string, backing []string, sizeMiB int) error
	// Start starts a VM: it boots the kernel, or, when spec.Incoming is set, loads that saved
	// state and stays paused until Resume. On error nothing of it is left running.
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
	// Save pauses the VM and writes its state (see SaveSpec). The VM stays paused: Resume
	// continues it, Stop ends it. If it fails after SaveSpec.Overlay took over, the result's
	// Frozen is set all the same.
	Save(ctx context.Context, spec SaveSpec) (SaveResult, error)
	// Resume runs a paused VM: one started from saved state, once that is loaded, or one
	// Save left paused.
	Resume(ctx context.Context) error
}

// SaveSpec says where a save goes.
type SaveSpec struct {
	// State receives the device state, and the memory unless the VM has SharedMemory.
	State *os.File
	// Overlay, when set, is a new empty disk (from PrepareDisk over the VM's whole chain) that
	// the VM writes to from now on; the disk it wrote to so far is then frozen (a read-only
	// layer). Without it the VM's disk is only flushed, so the VM must not run again.
	Overlay string
}

// SaveResult describes a finished save.
type SaveResult struct {
	// Frozen is the disk that holds the disk state of the save: the VM's writable disk until
	// then (now read-only when an Overlay took over).
	Frozen string
	// Memory is the file that holds the guest memory of a VM with SharedMemory, else "".
	Memory string
	// Bytes is the size of the state written.
	Bytes int64
	// Paused is how long the guest was paused so far (the save itself).
	Paused time.Duration
}

// Spec is everything needed to start one VM. All paths are absolute.
type Spec struct {
	// Name is the VM's name (hostname, cgroup and log name).
	Name string `json:"name"`
	// Dir is the VM's private directory (0700); backends put their sockets there.
	Dir string `json:"dir"`
	// Kernel is the uncompressed vmlinux; Initrd the initramfs. Unused for saved state.
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	// Cmdline is appended to the backend's own kernel arguments.
	Cmdline string `json:"cmdline"`
	// Disk is the writable root disk from PrepareDisk; it becomes /dev/vda.
	Disk string `json:"disk"`
	// Backing is the read-only chain under Disk: the raw base image, then qcow2 layers.
	Backing []string `json:"backing"`
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
	// SharedMemory keeps the guest's memory in a file of the backend's (SaveResult.Memory),
	// shared: whatever the guest writes lands in it, and a Save leaves the memory out of the
	// state. A template is made this way, so that its clones map the memory instead of
	// loading it.
	SharedMemory bool `json:"shared_memory,omitempty"`
	// Console receives the guest's serial console.
	Console io.Writer `json:"-"`
	// Incoming, when set, is saved state to start from instead of booting the kernel.
	Incoming *os.File `json:"-"`
	// TemplateMemory, when set with Incoming, is the memory of the VM whose (memory-less)
	// state Incoming holds: a sealed file mapped privately, so VMs started from it share its
	// pages until they write to them.
	TemplateMemory *os.File `json:"-"`
}
