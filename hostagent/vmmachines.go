// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
	"github.com/waggle-dev/waggle/images"
)

// VMMachines is Machines on the real microVM layer: vm.Manager boots and finds the VMs, a
// guest image per runtime comes from the image cache, and guestclient talks to the guest.
type VMMachines struct {
	mgr      *vm.Manager
	imageDir string // cache directory images.Find reads
	logger   *slog.Logger
}

// NewVMMachines adapts mgr; runtimes name images built into imageCacheDir.
func NewVMMachines(mgr *vm.Manager, imageCacheDir string, logger *slog.Logger) *VMMachines {
	if logger == nil {
		logger = slog.Default()
	}
	return &VMMachines{mgr: mgr, imageDir: imageCacheDir, logger: logger}
}

// Launch boots a VM from the runtime's image and connects to its guest.
func (v *VMMachines) Launch(ctx context.Context, spec LaunchSpec) (Machine, error) {
	img, err := images.Find(v.imageDir, spec.Runtime)
	if err != nil {
		return nil, fmt.Errorf("image for runtime %q: %w", spec.Runtime, err)
	}
	m, err := v.mgr.Launch(ctx, vm.LaunchSpec{ID: spec.ID, ImagePath: img.Path, CPUs: spec.Resources.CPUs,
		MemoryMiB: spec.Resources.MemoryMiB, DiskMiB: spec.Resources.DiskMiB, Lease: spec.Lease})
	if err != nil {
		return nil, err
	}
	vmm := &vmMachine{m: m}
	if _, err := vmm.client(ctx); err != nil {
		return nil, errors.Join(err, m.Stop(context.WithoutCancel(ctx)))
	}
	return vmm, nil
}

// Pause saves m into its snapshot directory and stops it.
func (v *VMMachines) Pause(ctx context.Context, m Machine) (Paused, error) {
	vmm, ok := m.(*vmMachine)
	if !ok {
		return Paused{}, fmt.Errorf("pause %s: not a VM of this host", m.ID())
	}
	dir, err := v.mgr.SnapshotDir(m.ID())
	if err != nil {
		return Paused{}, err
	}
	if err := os.RemoveAll(dir); err != nil { // left by a pause that failed half-way
		return Paused{}, fmt.Errorf("pause %s: %w", m.ID(), err)
	}
	vmm.closeClient()
	start := time.Now()
	snap, err := vmm.m.Snapshot(ctx, dir, vm.SnapshotOptions{})
	if err != nil {
		return Paused{}, fmt.Errorf("pause %s: %w", m.ID(), err)
	}
	took := time.Since(start)
	size, err := snap.Size()
	if err != nil {
		return Paused{}, fmt.Errorf("pause %s: %w", m.ID(), err)
	}
	return Paused{Bytes: size, Location: "host:" + dir, Files: snap.Files(), Took: took}, nil
}

// Resume restores the VM paused under spec.ID and deletes the snapshot once it runs (the VM
// links the layers it needs).
func (v *VMMachines) Resume(ctx context.Context, spec LaunchSpec) (Machine, error) {
	dir, err := v.mgr.SnapshotDir(spec.ID)
	if err != nil {
		return nil, err
	}
	snap, err := snapshot.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", spec.ID, err)
	}
	m, err := v.mgr.Restore(ctx, snap, vm.LaunchSpec{ID: spec.ID, Lease: spec.Lease})
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", spec.ID, err)
	}
	vmm := &vmMachine{m: m}
	if _, err := vmm.client(ctx); err != nil {
		return nil, errors.Join(err, m.Stop(context.WithoutCancel(ctx)))
	}
	if err := snap.Remove(); err != nil {
		v.logger.Warn("resumed; snapshot not removed", "env", spec.ID, "dir", dir, "err", err)
	}
	return vmm, nil
}

// Fork snapshots the running src (which goes on running) and restores the copy as spec.ID;
// the snapshot is deleted once the copy runs.
func (v *VMMachines) Fork(ctx context.Context, src Machine, spec LaunchSpec) (Machine, error) {
	vmm, ok := src.(*vmMachine)
	if !ok {
		return nil, fmt.Errorf("fork %s: not a VM of this host", src.ID())
	}
	dir, err := v.mgr.SnapshotDir("fork-" + spec.ID)
	if err != nil {
		return nil, err
	}
	snap, err := vmm.m.Snapshot(ctx, dir, vm.SnapshotOptions{KeepRunning: true})
	if err != nil {
		return nil, fmt.Errorf("fork %s: %w", src.ID(), err)
	}
	defer func() {
		if err := snap.Remove(); err != nil {
			v.logger.Warn("fork snapshot not removed", "env", spec.ID, "dir", dir, "err", err)
		}
	}()
	m, err := v.mgr.Restore(ctx, snap, vm.LaunchSpec{ID: spec.ID, Lease: spec.Lease})
	if err != nil {
		return nil, fmt.Errorf("fork %s: %w", src.ID(), err)
	}
	fork := &vmMachine{m: m}
	if _, err := fork.client(ctx); err != nil {
		return nil, errors.Join(err, m.Stop(context.WithoutCancel(ctx)))
	}
	return fork, nil
}

// PausedDir is where Pause saves id's snapshot.
func (v *VMMachines) PausedDir(id string) (string, error) { return v.mgr.SnapshotDir(id) }

// DropPaused deletes the snapshot a Pause of id saved.
func (v *VMMachines) DropPaused(_ context.Context, id string) error {
	dir, err := v.mgr.SnapshotDir(id)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// Scan returns the VMs whose shims still run; it removes what is left of dead ones (a failure
// to remove one is logged, not fatal).
func (v *VMMachines) Scan(ctx context.Context) ([]Machine, error) {
	found, err := v.mgr.Scan(ctx)
	if err != nil {
		v.logger.Warn("scan VMs", "err", err)
	}
	out := make([]Machine, 0, len(found))
	for _, m := range found {
		out = append(out, &vmMachine{m: m})
	}
	return out, nil
}

// vmMachine is one VM with a guest connection, opened on first use and reopened after it
// broke (an adopted VM has none until its first call).
type vmMachine struct {
	m  *vm.Machine
	mu sync.Mutex
	c  *guestclient.Client
}

func (v *vmMachine) ID() string    { return v.m.ID() }
func (v *vmMachine) IsAlive() bool { return v.m.IsAlive() }

func (v *vmMachine) Renew(ctx context.Context, lease time.Duration) error {
	return v.m.Renew(ctx, lease)
}

func (v *vmMachine) client(ctx context.Context) (*guestclient.Client, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c != nil {
		return v.c, nil
	}
	c, err := v.m.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to guest %s: %w", v.m.ID(), err)
	}
	v.c = c
	return c, nil
}

// retire drops c after it reported a closed connection, so the next call reconnects.
func (v *vmMachine) retire(c *guestclient.Client, err error) {
	if !errors.Is(err, guestclient.ErrClosed) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c == c {
		_ = c.Close()
		v.c = nil
	}
}

func (v *vmMachine) Stop(ctx context.Context) error {
	v.closeClient()
	return v.m.Stop(ctx)
}

// closeClient closes the guest connection, if one is open.
func (v *vmMachine) closeClient() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c != nil {
		_ = v.c.Close()
		v.c = nil
	}
}

func (v *vmMachine) Exec(ctx context.Context, spec ExecSpec) (ExecResult, error) {
	c, err := v.client(ctx)
	if err != nil {
		return ExecResult{}, err
	}
	res, err := c.Exec(ctx, guestclient.ExecRequest{Argv: spec.Argv, Env: spec.Env, Stdin: spec.Stdin, Program: spec.Program,
		Timeout: spec.Timeout, MaxOutput: spec.MaxOutput, Stdout: spec.Stdout, Stderr: spec.Stderr})
	if err != nil {
		v.retire(c, err)
		return ExecResult{}, err
	}
	return ExecResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode, Duration: res.Duration,
		TimedOut: res.TimedOut, Truncated: res.Truncated}, nil
}

func (v *vmMachine) WriteFile(ctx context.Context, p string, data []byte, mode uint32) error {
	c, err := v.client(ctx)
	if err != nil {
		return err
	}
	err = c.WriteFile(ctx, p, data, fs.FileMode(mode))
	v.retire(c, err)
	return fileErr(err)
}

func (v *vmMachine) ReadFile(ctx context.Context, p string, max int64) ([]byte, error) {
	c, err := v.client(ctx)
	if err != nil {
		return nil, err
	}
	data, err := c.ReadFile(ctx, p, max)
	v.retire(c, err)
	return data, fileErr(err)
}

func (v *vmMachine) ListFiles(ctx context.Context, p string, recursive bool, max int) ([]hostrpc.FileInfo, error) {
	c, err := v.client(ctx)
	if err != nil {
		return nil, err
	}
	list, err := c.ListFiles(ctx, p, recursive)
	v.retire(c, err)
	if err != nil {
		return nil, fileErr(err)
	}
	if len(list) > max {
		return nil, fmt.Errorf("%w: %d entries, at most %d per listing", ErrTooLarge, len(list), max)
	}
	out := make([]hostrpc.FileInfo, 0, len(list))
	for _, f := range list {
		name := strings.TrimPrefix(f.Path, strings.TrimSuffix(p, "/")+"/")
		out = append(out, hostrpc.FileInfo{Name: name, Size: f.Size, IsDir: f.IsDir, Mode: f.Mode.String(), Modified: f.ModTime})
	}
	return out, nil
}

// fileErr maps the guest client's errors to the agent's typed errors.
func fileErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, guestclient.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, guestclient.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, guestclient.ErrIsDir), errors.Is(err, guestclient.ErrNotDir), errors.Is(err, guestclient.ErrNotRegular),
		errors.Is(err, guestclient.ErrPermission), errors.Is(err, guestclient.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	return err
}
