// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/waggle-dev/waggle/hostagent/vm/cgroup"
	"github.com/waggle-dev/waggle/hostagent/vm/uids"
)

// Cgroup modes (Config.Cgroups).
const (
	CgroupsAuto = "auto" // use cgroup v2 when the host has it; on a host without, say so once and run VMs without limits
	CgroupsOn   = "on"   // cgroup v2 is required: a host without it fails at start
	CgroupsOff  = "off"  // no cgroups
)

// identity decides who each VM's QEMU runs as. An agent that is not root runs QEMU as itself
// (it cannot do otherwise). An agent that is root never runs QEMU as root: every VM's QEMU
// runs as Config.QEMUUser, or as a uid (and gid) of its own from Config.QEMUUIDs, claimed for
// the VM's life.
type identity struct {
	uid, gid int             // QEMUUser's; 0 when there is none
	alloc    *uids.Allocator // per-VM uids; nil when there are none
	groups   []uint32        // supplementary groups of QEMU: the group of /dev/kvm
}

// newIdentity checks cfg's choice of QEMU user against the privileges of this process.
// alive reports whether a VM (the owner of a uid claim) still exists.
func newIdentity(cfg Config, alive func(vm string) bool) (*identity, error) {
	root := os.Geteuid() == 0
	switch {
	case !root && (cfg.QEMUUser != "" || !cfg.QEMUUIDs.IsZero()):
		return nil, fmt.Errorf("vm: running QEMU as another user (qemu user %q, uid range %s) needs root; this process runs as uid %d",
			cfg.QEMUUser, cfg.QEMUUIDs, os.Geteuid())
	case !root:
		return &identity{}, nil
	case cfg.QEMUUser != "":
		u, err := user.Lookup(cfg.QEMUUser)
		if err != nil {
			return nil, fmt.Errorf("vm: qemu user %q: %w (create it, or use a uid range)", cfg.QEMUUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if uid == 0 || gid == 0 {
			return nil, fmt.Errorf("vm: qemu user %q is root (uid %d, gid %d): QEMU must run unprivileged", cfg.QEMUUser, uid, gid)
		}
		return &identity{uid: uid, gid: gid, groups: kvmGroups()}, nil
	case cfg.QEMUUIDs.IsZero():
		return nil, errors.New("vm: QEMU would run as root: give a uid range (--qemu-uid-range) or an unprivileged user (--qemu-user)")
	}
	alloc, err := uids.New(filepath.Join(cfg.StateDir, "uids"), cfg.QEMUUIDs, alive)
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	return &identity{alloc: alloc, groups: kvmGroups()}, nil
}

// user claims the uid and gid VM id's QEMU runs as (0, 0: as this process) and checks that
// such a QEMU can read the files it opens by path (the base image, kernel and initramfs).
func (m *Manager) user(ctx context.Context, id string, files ...string) (int, int, error) {
	if m.ident.unprivileged() {
		for _, f := range files {
			if err := reachable(f); err != nil {
				return 0, 0, err
			}
		}
	}
	return m.ident.claim(ctx, id)
}

// unprivileged reports whether QEMU runs as another user than this process.
func (id *identity) unprivileged() bool { return id.uid != 0 || id.alloc != nil }

// claim returns the uid and gid QEMU of vm runs as (0, 0: as this process).
func (id *identity) claim(ctx context.Context, vm string) (int, int, error) {
	if id.alloc == nil {
		return id.uid, id.gid, nil
	}
	uid, err := id.alloc.Claim(ctx, vm)
	if err != nil {
		return 0, 0, err
	}
	return int(uid), int(uid), nil
}

// release gives back vm's uid, if it has one of its own.
func (id *identity) release(ctx context.Context, vm string) error {
	if id == nil || id.alloc == nil {
		return nil
	}
	return id.alloc.Release(ctx, vm)
}

// kvmGroups is the group owning /dev/kvm, when it grants its group access: QEMU needs it to
// use KVM as an unprivileged user.
func kvmGroups() []uint32 {
	fi, err := os.Stat("/dev/kvm")
	if err != nil || fi.Mode().Perm()&0o060 != 0o060 {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Gid == 0 {
		return nil
	}
	return []uint32{st.Gid}
}

// reachable checks that a QEMU running as another user can reach path: every directory above
// it must be searchable by others, and path itself searchable (a directory) or readable.
func reachable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("QEMU runs as an unprivileged user and cannot reach %s: directory %s (mode %#o) is not searchable by others; chmod o+x it",
				path, dir, fi.Mode().Perm())
		}
		if dir == "/" {
			break
		}
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return err
	}
	need, what := os.FileMode(0o004), "readable"
	if fi.IsDir() {
		need, what = 0o001, "searchable"
	}
	if fi.Mode().Perm()&need == 0 {
		return fmt.Errorf("QEMU runs as an unprivileged user and cannot use %s (mode %#o): it is not %s by others", path, fi.Mode().Perm(), what)
	}
	return nil
}

// resolveCgroups settles cfg.Cgroups once, at start: the cgroup root VMs get ("" for none).
// A host without cgroup v2 (cgroup v1, like many CI machines) is reported once in auto mode and
// its VMs run without CPU and memory limits; every other failure to set cgroups up is an error,
// and so is a host without cgroup v2 when they are required.
func resolveCgroups(cfg Config) (string, error) {
	if cfg.Cgroups == CgroupsOff || cfg.CgroupRoot == "" {
		return "", nil
	}
	err := cgroup.Setup(cfg.CgroupRoot)
	switch {
	case err == nil:
		return cfg.CgroupRoot, nil
	case cfg.Cgroups == CgroupsAuto && (errors.Is(err, cgroup.ErrUnavailable) || os.Geteuid() != 0):
		// A supported setup, reported once (at info, so that `waggle vm run` keeps its stderr
		// the command's).
		cfg.Logger.Info("VMs run without CPU and memory limits: no usable cgroup v2 on this host (cgroups auto; "+
			"--cgroups on makes this an error)", "cgroup_root", cfg.CgroupRoot, "err", err)
		return "", nil
	}
	return "", fmt.Errorf("vm: cgroups (%s): %w; fix the hierarchy, or start with --cgroups off to run VMs without CPU and memory limits",
		cfg.Cgroups, err)
}
