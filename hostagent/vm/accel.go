// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/kernel"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

// accelVerdict is the cached result of the KVM probe.
type accelVerdict struct {
	Accel  string    `json:"accel"`
	Reason string    `json:"reason,omitempty"`
	Kernel string    `json:"kernel"`
	Host   string    `json:"host_kernel"`
	Probed time.Time `json:"probed"`
}

// resolveAccel turns "auto" into kvm or tcg: it boots the kernel under KVM once (bounded by
// ProbeTimeout) and remembers the answer in CacheDir/accel.json for this guest and host kernel.
func (m *Manager) resolveAccel(ctx context.Context, k *kernel.Kernel) (string, error) {
	if m.cfg.Accel != "auto" {
		return m.cfg.Accel, nil
	}
	path := filepath.Join(m.cfg.CacheDir, "accel.json")
	host := hostKernel()
	var v accelVerdict
	if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &v) == nil &&
		v.Kernel == k.Release && v.Host == host && (v.Accel == "kvm" || v.Accel == "tcg") {
		return v.Accel, nil
	}
	start := time.Now()
	v = accelVerdict{Accel: "kvm", Kernel: k.Release, Host: host, Probed: start.UTC()}
	if err := m.probeKVM(ctx, k); err != nil {
		if !errors.Is(err, qemu.ErrKVMUnusable) || ctx.Err() != nil {
			return "", err
		}
		v.Accel, v.Reason = "tcg", err.Error()
	}
	m.cfg.Logger.Info("acceleration probed", "accel", v.Accel, "reason", v.Reason, "took", time.Since(start))
	if data, err := json.Marshal(v); err == nil {
		if err := fsutil.WriteFileAtomic(path, data, 0o644); err != nil {
			m.cfg.Logger.Warn("cache acceleration verdict", "err", err)
		}
	}
	return v.Accel, nil
}

// probeKVM runs qemu.ProbeKVM as a VM's QEMU would run: as an unprivileged uid (one claimed
// for the probe's while) with access to /dev/kvm.
func (m *Manager) probeKVM(ctx context.Context, k *kernel.Kernel) error {
	const owner = "kvm-probe"
	if !m.ident.unprivileged() {
		return qemu.ProbeKVM(ctx, m.cfg.QEMUBinary, k.Vmlinux, m.cfg.ProbeTimeout, nil)
	}
	m.setLaunching(owner, true)
	defer m.setLaunching(owner, false)
	uid, gid, err := m.user(ctx, owner, k.Vmlinux)
	if err != nil {
		return fmt.Errorf("kvm probe: %w", err)
	}
	defer func() {
		if err := m.ident.release(context.WithoutCancel(ctx), owner); err != nil {
			m.cfg.Logger.Warn("kvm probe: uid not given back", "err", err)
		}
	}()
	return qemu.ProbeKVM(ctx, m.cfg.QEMUBinary, k.Vmlinux, m.cfg.ProbeTimeout,
		&syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: m.ident.groups})
}

func hostKernel() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}
