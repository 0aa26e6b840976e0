// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"log/slog"
	"os"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/cgroup"
	"github.com/waggle-dev/waggle/hostagent/vm/uids"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
)

// Config configures a Manager. Every field has a usable default except the paths.
type Config struct {
	// StateDir holds one directory per VM (StateDir/vms/<id>, mode 0700).
	StateDir string
	// CacheDir holds the kernel, initramfs archives and the acceleration verdict.
	CacheDir string
	// WaggleBinary is the waggle executable; its hidden `vm shim` command is each VM's shim.
	WaggleBinary string
	// InitBinary is the static waggle-init that becomes the guest's /init.
	InitBinary string
	// Accel is "auto" (probe KVM once, fall back to TCG), "kvm" or "tcg".
	Accel string
	// QEMUBinary and QEMUImgBinary are the QEMU programs.
	QEMUBinary    string
	QEMUImgBinary string
	// QEMU never runs as root. A Manager running as root runs each VM's QEMU as QEMUUser, when
	// set (it must exist and not be root), else as a uid and gid of the VM's own from QEMUUIDs
	// (DefaultConfig sets uids.DefaultRange when running as root), claimed under StateDir/uids
	// for the VM's life. A Manager that is not root runs QEMU as itself and takes neither.
	QEMUUser string
	QEMUUIDs uids.Range
	// CgroupRoot is the cgroup v2 directory for per-VM limits; Cgroups is CgroupsAuto (the
	// default), CgroupsOn or CgroupsOff. NewManager settles them once: with cgroups in use, a VM
	// whose group cannot be made fails its boot.
	CgroupRoot string
	Cgroups    string
	// KernelPackage is the Debian kernel package to boot.
	KernelPackage string
	// ProbeTimeout bounds the KVM probe boot.
	ProbeTimeout time.Duration
	// SilenceTimeout kills and retries a boot whose console stays silent this long;
	// SilenceCPU one whose QEMU used this much CPU time without the guest printing anything
	// (under load a boot is slow in wall time but not in CPU time).
	SilenceTimeout time.Duration
	SilenceCPU     time.Duration
	// PackageProxy is the unix socket of the host's package proxy (pkgproxy.Listen), which the
	// shims relay guests' connections to; empty: guests have none.
	PackageProxy string
	// BootTimeout bounds one boot attempt; BootAttempts is the number of attempts.
	BootTimeout  time.Duration
	BootAttempts int
	// RestoreTimeout bounds a restore: loading the saved state and the guest's new identity.
	RestoreTimeout time.Duration
	// Templates says how Launch uses template snapshots (one per image and size, made on
	// first use or by Template): TemplatesShared (the default), TemplatesPrivate or
	// TemplatesOff.
	Templates string
	// Defaults for LaunchSpec fields left 0 or empty. Egress is a policy as vnet.ParsePolicy
	// reads it: "none" (the default), "packages" (the package proxy only) or
	// "allow:HOST|CIDR,..." (the package proxy and those).
	CPUs      int
	MemoryMiB int
	DiskMiB   int
	Egress    string
	Logger    *slog.Logger
}

// DefaultConfig returns defaults for everything but StateDir, CacheDir, WaggleBinary and
// InitBinary.
func DefaultConfig() Config {
	cfg := Config{
		Accel:          "auto",
		QEMUBinary:     "qemu-system-x86_64",
		QEMUImgBinary:  "qemu-img",
		CgroupRoot:     cgroup.DefaultRoot,
		Cgroups:        CgroupsAuto,
		KernelPackage:  "linux-image-amd64",
		ProbeTimeout:   3 * time.Second,
		SilenceTimeout: 30 * time.Second,
		SilenceCPU:     6 * time.Second,
		BootTimeout:    60 * time.Second,
		BootAttempts:   2,
		RestoreTimeout: 30 * time.Second,
		Templates:      TemplatesShared,
		CPUs:           1,
		MemoryMiB:      512,
		DiskMiB:        2048,
		Egress:         vnet.EgressNone,
		Logger:         slog.Default(),
	}
	if os.Geteuid() == 0 {
		cfg.QEMUUIDs = uids.DefaultRange()
	}
	return cfg
}

// Template modes (Config.Templates).
const (
	// TemplatesShared restores VMs from templates whose memory they map privately: clones
	// share the pages none of them wrote (and load no memory at all).
	TemplatesShared = "shared"
	// TemplatesPrivate restores VMs from templates whose memory each one loads into memory
	// of its own.
	TemplatesPrivate = "private"
	// TemplatesOff boots every VM.
	TemplatesOff = "off"
)
