// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm"
)

// LeftVM is a VM found in a host agent's directory.
type LeftVM struct {
	Host    string
	Machine *vm.Machine
}

// LeftoverVMs are the VMs the host agents' shims still run (after Down: those kept with
// DrainKeep, or a drain that failed).
func (c *Cluster) LeftoverVMs(ctx context.Context) ([]LeftVM, error) {
	var left []LeftVM
	var errs []error
	for _, p := range c.Procs(RoleHostAgent) {
		if _, err := os.Stat(filepath.Join(p.Dir, "vms")); errors.Is(err, os.ErrNotExist) {
			continue
		}
		cfg := vm.DefaultConfig()
		cfg.StateDir, cfg.CacheDir, cfg.WaggleBinary, cfg.InitBinary = p.Dir, c.cfg.CacheDir, c.cfg.Waggle, c.cfg.Init
		cfg.Logger = slog.New(slog.DiscardHandler)
		mgr, err := vm.NewManager(cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ms, err := mgr.Scan(sctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
		}
		for _, m := range ms {
			left = append(left, LeftVM{Host: p.Name, Machine: m})
		}
	}
	return left, errors.Join(errs...)
}

// stopVMs stops VMs a drain left behind and reports them as an error.
func stopVMs(ctx context.Context, left []LeftVM) error {
	var errs []error
	for _, l := range left {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := l.Machine.Stop(sctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("host agent %s left VM %s running after its drain, and stopping it failed: %w", l.Host, l.Machine.ID(), err))
			continue
		}
		errs = append(errs, fmt.Errorf("host agent %s left VM %s running after its drain (stopped now)", l.Host, l.Machine.ID()))
	}
	return errors.Join(errs...)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// mkdirs makes dirs, searchable but not listable by others (each VM's QEMU runs as a uid of its
// own and must reach its VM directory inside a host agent's directory).
func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	return nil
}
