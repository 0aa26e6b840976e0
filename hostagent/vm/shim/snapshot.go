// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
)

// keyFile is the VM's SSH private key in its directory (written by the launcher).
const keyFile = "id_ed25519"

// snapshot saves the running VM into r.Dir, in named stages: directory, overlay (when the VM
// keeps running), save (guest paused), files (layers, key, memory), manifest, resume. The
// guest is paused from the save to the resume. On failure the directory is removed and the VM
// resumed. State.Snapshot records the progress, for a launcher that restarted meanwhile.
func (s *server) snapshot(ctx context.Context, vm hypervisor.Handle, r SnapshotRequest) (snap snapshot.Snapshot, err error) {
	s.setState(func(st *State) {
		st.Phase, st.Snapshot = PhaseSaving, &SnapshotState{Dir: r.Dir}
	})
	start := time.Now()
	var saved hypervisor.SaveResult
	defer func() {
		if err != nil {
			err = fmt.Errorf("snapshot: %w", err)
			if rmErr := os.RemoveAll(r.Dir); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = errors.Join(err, rmErr)
			}
			// The VM goes on as it was (on the new overlay if the switch happened).
			if resErr := vm.Resume(context.WithoutCancel(ctx)); resErr != nil {
				err = errors.Join(err, fmt.Errorf("resume after failed snapshot: %w", resErr))
			}
		}
		s.setState(func(st *State) {
			if err != nil || r.KeepRunning {
				st.Phase = PhaseReady
			} // else the VM stays saving until it is stopped
			st.Snapshot = &SnapshotState{Dir: r.Dir, Done: err == nil}
			if err != nil {
				st.Snapshot.Error = err.Error()
			}
		})
		s.logger.Info("snapshot", "dir", r.Dir, "keep_running", r.KeepRunning, "seconds", time.Since(start).Seconds(),
			"paused_seconds", saved.Paused.Seconds(), "bytes", saved.Bytes, "err", err)
	}()
	if r.KeepRunning && s.spec.VM.SharedMemory {
		// Its memory file is the snapshot's memory: the guest must not write to it any more.
		return snapshot.Snapshot{}, errors.New("a VM with shared memory cannot keep running after a snapshot")
	}
	if err := os.Mkdir(r.Dir, 0o700); err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("directory: %w", err)
	}
	version, err := s.backend.Version(ctx)
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("directory: %w", err)
	}
	var overlay string
	if r.KeepRunning {
		overlay = filepath.Join(s.dir, "disk-"+strconv.Itoa(len(s.backing))+".qcow2")
		if err := s.backend.PrepareDisk(ctx, overlay, append(s.backing, s.disk), s.spec.DiskMiB); err != nil {
			return snapshot.Snapshot{}, fmt.Errorf("overlay: %w", err)
		}
	}
	state, err := os.OpenFile(filepath.Join(r.Dir, snapshot.StateFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("save: %w", err)
	}
	saved, err = vm.Save(ctx, hypervisor.SaveSpec{State: state, Overlay: overlay})
	if cerr := state.Close(); err == nil {
		err = cerr
	}
	switch {
	case overlay != "" && saved.Frozen != "": // the VM writes to the overlay now
		s.backing, s.disk = append(s.backing, saved.Frozen), overlay
	case overlay != "":
		os.Remove(overlay)
	}
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("save: %w", err)
	}
	st := s.currentState()
	snap = snapshot.Snapshot{
		Dir: r.Dir, Version: snapshot.Version, Backend: s.backend.Name(), Hypervisor: version, Accel: s.spec.VM.Accel,
		CPUs: s.spec.VM.CPUs, MemoryMiB: s.spec.VM.MemoryMiB, DiskMiB: s.spec.DiskMiB,
		State: snapshot.StateFile, Key: snapshot.KeyFile, HostKey: st.HostKey, Source: s.spec.VM.Name,
		Created: time.Now().UTC(), PausedSeconds: saved.Paused.Seconds(),
	}
	if snap.Base, err = baseOf(s.spec.VM.Backing[0]); err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("files: %w", err)
	}
	// The frozen disk and every layer under it, up to the base image.
	layers := slices.Clone(s.backing[1:])
	if overlay == "" {
		layers = append(layers, saved.Frozen)
	}
	files := map[string]string{snapshot.KeyFile: filepath.Join(s.dir, keyFile)}
	for i, l := range layers {
		snap.Layers = append(snap.Layers, snapshot.LayerFile(i))
		files[snapshot.LayerFile(i)] = l
	}
	if saved.Memory != "" {
		snap.Memory = snapshot.MemoryFile
		files[snapshot.MemoryFile] = saved.Memory
	}
	for name, src := range files {
		if err := snapshot.LinkOrCopy(src, filepath.Join(r.Dir, name)); err != nil {
			return snapshot.Snapshot{}, fmt.Errorf("files: %w", err)
		}
	}
	if err := seal(snap); err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("files: %w", err)
	}
	if err := snap.Write(); err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("manifest: %w", err)
	}
	if r.KeepRunning {
		if err := vm.Resume(ctx); err != nil {
			return snapshot.Snapshot{}, fmt.Errorf("resume: %w", err)
		}
	}
	return snap, nil
}

// seal makes the snapshot's files read-only and ours: some were QEMU's (its user's) until
// now, and a snapshot never changes.
func seal(snap snapshot.Snapshot) error {
	for _, f := range snap.Files()[:len(snap.Files())-1] { // all but the manifest, not written yet
		if err := os.Chown(f, os.Getuid(), os.Getgid()); err != nil {
			return err
		}
		if err := os.Chmod(f, 0o400); err != nil {
			return err
		}
	}
	return nil
}

// baseOf identifies the base image at path.
func baseOf(path string) (snapshot.Base, error) {
	st, err := os.Stat(path)
	if err != nil {
		return snapshot.Base{}, err
	}
	return snapshot.Base{Path: path, Size: st.Size()}, nil
}
