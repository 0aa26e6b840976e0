// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/uids"
	"github.com/waggle-dev/waggle/internal/progress"
)

// egressUsage documents the --egress flag of the commands that boot VMs.
const egressUsage = "what guests may connect to: none, packages (the host agent's package proxy only: pip, npm and apt\n" +
	"through it) or allow:HOST|CIDR,... (the proxy and TCP 80/443 to those); private, loopback and metadata addresses are always refused"

// newLogger is a text logger on w at the named level (debug, info, warn, error).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// vmOptions are the flags of every command that boots VMs.
type vmOptions struct {
	accel, init, qemuUser, qemuUIDs, cgroups, egress, templates string
}

// addFlags defines the VM flags on f; commands that run guest code also take --egress, whose
// default differs between them.
func (o *vmOptions) addFlags(f *pflag.FlagSet, defaultEgress string) {
	f.StringVar(&o.accel, "accel", "auto", "acceleration: auto, kvm or tcg")
	f.StringVar(&o.init, "init", "", "static waggle-init binary (default: waggle-init beside this binary or in PATH)")
	f.StringVar(&o.qemuUser, "qemu-user", "", "run every VM's QEMU as this existing unprivileged user instead of a uid of its own")
	f.StringVar(&o.qemuUIDs, "qemu-uid-range", "auto", "uids (and gids) FIRST-LAST that each VM's QEMU gets one of, its own; auto: "+
		uids.DefaultRange().String()+" when running as root, none otherwise; QEMU never runs as root")
	f.StringVar(&o.cgroups, "cgroups", vm.CgroupsAuto, "per-VM CPU and memory limits in cgroup v2: auto (on hosts that have it; "+
		"reported once otherwise), on (required) or off")
	f.StringVar(&o.templates, "templates", vm.TemplatesShared, "start VMs from per-image template snapshots: shared (clones map the\n"+
		"template's memory and share its unchanged pages), private (each clone loads its own copy) or off (boot every VM)")
	if defaultEgress != "" {
		f.StringVar(&o.egress, "egress", defaultEgress, egressUsage)
	}
}

// newManager is the microVM layer for VMs whose state lives in stateDir, with the kernel and
// images in cacheDir; this binary is each VM's shim, which relays guests to the package proxy
// on the unix socket packageProxy (none if empty).
func (o vmOptions) newManager(stateDir, cacheDir, packageProxy string, logger *slog.Logger) (*vm.Manager, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	initBin, err := findInit(o.init, self)
	if err != nil {
		return nil, err
	}
	cfg := vm.DefaultConfig()
	cfg.StateDir, cfg.CacheDir = stateDir, cacheDir
	cfg.WaggleBinary, cfg.InitBinary = self, initBin
	cfg.Accel, cfg.QEMUUser, cfg.Cgroups, cfg.Egress, cfg.Templates, cfg.Logger = o.accel, o.qemuUser, o.cgroups, o.egress, o.templates, logger
	switch {
	case o.qemuUser != "" && o.qemuUIDs != "auto":
		return nil, fmt.Errorf("give --qemu-user or --qemu-uid-range, not both")
	case o.qemuUser != "":
		cfg.QEMUUIDs = uids.Range{}
	case o.qemuUIDs != "auto":
		if cfg.QEMUUIDs, err = uids.ParseRange(o.qemuUIDs); err != nil {
			return nil, fmt.Errorf("--qemu-uid-range: %w", err)
		}
	}
	cfg.PackageProxy = packageProxy
	return vm.NewManager(cfg)
}

// newVMMachines is the real microVM layer of one host agent whose state lives in stateDir;
// its guests reach the agent's package proxy. It prepares what every boot needs first (the
// guest kernel and initramfs, the acceleration), as a stage of label on rep: on a fresh
// machine that downloads the kernel.
func newVMMachines(ctx context.Context, stateDir string, o hostAgentOptions, logger *slog.Logger, rep *progress.Reporter, label string) (hostagent.Machines, error) {
	mgr, err := o.vm.newManager(stateDir, o.cacheDir, hostagent.PackageSocket(stateDir), logger)
	if err != nil {
		return nil, err
	}
	err = rep.Stage(label, "prepare", "", func() (string, error) {
		accel, err := mgr.Accel(ctx)
		return "guest kernel and initramfs ready; acceleration " + accel, err
	})
	if err != nil {
		return nil, err
	}
	return hostagent.NewVMMachines(mgr, o.cacheDir, logger), nil
}
