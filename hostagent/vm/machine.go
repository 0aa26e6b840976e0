// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm/cgroup"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
)

// Machine is a running VM, launched or adopted by a Manager.
type Machine struct {
	id, dir    string
	cgroupRoot string
	ident      *identity // gives back the VM's uid on Stop
	shim       *shim.Client
	signer     ssh.Signer
	hostKey    ssh.PublicKey
	bootTime   time.Duration

	stopMu  sync.Mutex
	stopped bool // a Stop succeeded
}

func (m *Machine) setState(st shim.State) {
	m.bootTime = time.Duration(st.BootSeconds * float64(time.Second))
	if st.HostKey != "" {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(st.HostKey)); err == nil {
			m.hostKey = k
		}
	}
}

// ID is the VM's id (also its guest hostname).
func (m *Machine) ID() string { return m.id }

// Dir is the VM's private directory.
func (m *Machine) Dir() string { return m.dir }

// Signer is the VM's SSH private key (the guest accepts only its public half).
func (m *Machine) Signer() ssh.Signer { return m.signer }

// HostKey is the guest's SSH host key as announced on its console, or nil.
func (m *Machine) HostKey() ssh.PublicKey { return m.hostKey }

// BootTime is the time from QEMU's start to the guest's ready marker (all attempts).
func (m *Machine) BootTime() time.Duration { return m.bootTime }

// IsAlive reports whether the VM's shim is running.
func (m *Machine) IsAlive() bool { return m.shim != nil && m.shim.Alive() }

// Renew extends the VM's lease to lease from now (0: by the lease it has; see
// LaunchSpec.Lease). Once the lease ran out the VM is stopping and the error wraps
// shim.ErrLeaseExpired.
func (m *Machine) Renew(ctx context.Context, lease time.Duration) error {
	if m.shim == nil {
		return fmt.Errorf("vm %s: not running", m.id)
	}
	if _, err := m.shim.Renew(ctx, lease); err != nil {
		return fmt.Errorf("vm %s: %w", m.id, err)
	}
	return nil
}

// DialSSH opens a byte stream to the guest's SSH server.
func (m *Machine) DialSSH(ctx context.Context) (net.Conn, error) {
	if m.shim == nil {
		return nil, fmt.Errorf("vm %s: not running", m.id)
	}
	return m.shim.DialSSH(ctx)
}

// Connect opens an SSH client to the guest, pinned to its host key when one was announced.
func (m *Machine) Connect(ctx context.Context) (*guestclient.Client, error) {
	conn, err := m.DialSSH(ctx)
	if err != nil {
		return nil, err
	}
	var opts []guestclient.Option
	if m.hostKey != nil {
		opts = append(opts, guestclient.WithHostKey(m.hostKey))
	}
	return guestclient.Dial(ctx, conn, m.signer, opts...)
}

// Stop stops the VM and its shim, removes its directory (disk, key, logs) and gives back its
// uid. It is idempotent, and a Stop that failed is tried again in full by the next one (each
// step is a no-op once done), so one failure never leaves the VM running for good.
func (m *Machine) Stop(ctx context.Context) error {
	m.stopMu.Lock()
	defer m.stopMu.Unlock()
	if m.stopped {
		return nil
	}
	var errs []error
	if m.shim != nil {
		errs = append(errs, m.shim.Stop(ctx))
	}
	// A shim that died without cleaning up may leave its cgroup behind.
	if m.cgroupRoot != "" {
		errs = append(errs, cgroup.RemovePath(filepath.Join(m.cgroupRoot, m.id)))
	}
	// The uid is free again once nothing it owns is left.
	if err := os.RemoveAll(m.dir); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, m.ident.release(ctx, m.id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vm %s: stop: %w", m.id, err)
	}
	m.stopped = true
	return nil
}

// SnapshotOptions say how Machine.Snapshot saves a VM.
type SnapshotOptions struct {
	// KeepRunning continues the VM after the save, on a new disk overlay over the frozen one
	// (the source of a fork). Without it the VM is stopped once saved (a pause): the Machine
	// is done, as after Stop.
	KeepRunning bool
}

// Snapshot saves the VM into dir, a new directory whose parent exists: its memory and device
// state, the frozen disk layers over its base image, and the key its guest accepts (see
// package snapshot). The guest is paused for the save. A VM restored from the snapshot (see
// Manager.Restore) has the same files and processes and a new identity; dir can be moved
// (snapshot.Snapshot.MoveTo) or deleted once no restore reads it.
func (m *Machine) Snapshot(ctx context.Context, dir string, opts SnapshotOptions) (snapshot.Snapshot, error) {
	if m.shim == nil {
		return snapshot.Snapshot{}, fmt.Errorf("vm %s: snapshot: not running", m.id)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("vm %s: snapshot: %w", m.id, err)
	}
	snap, err := m.shim.Snapshot(ctx, dir, opts.KeepRunning)
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("vm %s: %w", m.id, err)
	}
	if !opts.KeepRunning {
		if err := m.Stop(ctx); err != nil {
			return snap, err
		}
	}
	return snap, nil
}
