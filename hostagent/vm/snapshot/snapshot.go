// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package snapshot is a saved VM on disk: one directory with the saved state (memory and
// device state), the frozen disk layers the VM's disk needs over its base image, the SSH key
// the saved guest accepts, and a manifest (snapshot.json) written last, so that a directory
// with a manifest is complete. A snapshot is self-contained but for the base image, which the
// manifest names by path and size: it can be moved to another directory or host as a whole.
//
// Everything in a snapshot is as secret as the VM itself (its memory holds whatever the guest
// held): files are 0600 or 0400, the directory 0700.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// ManifestFile names the manifest in a snapshot directory.
const ManifestFile = "snapshot.json"

// Version is the manifest format this package writes and reads.
const Version = 1

// Names of the other files a snapshot writer uses.
const (
	StateFile  = "state"
	MemoryFile = "memory"
	KeyFile    = "key"
)

// LayerFile names the i-th frozen disk layer (0 lies on the base image).
func LayerFile(i int) string { return fmt.Sprintf("layer-%d.qcow2", i) }

// Snapshot describes one saved VM.
type Snapshot struct {
	// Dir is where the files are; it is not stored (a moved snapshot keeps its manifest).
	Dir string `json:"-"`
	// Version is the manifest format.
	Version int `json:"version"`
	// Backend names the hypervisor backend ("qemu"), Hypervisor its version: saved state
	// loads only into the same one.
	Backend    string `json:"backend"`
	Hypervisor string `json:"hypervisor"`
	// Accel is the acceleration the state was saved under ("kvm" or "tcg").
	Accel string `json:"accel"`
	// CPUs, MemoryMiB and DiskMiB are the VM's size; a restored VM has the same.
	CPUs      int `json:"cpus"`
	MemoryMiB int `json:"memory_mib"`
	DiskMiB   int `json:"disk_mib"`
	// Base is the raw base image under the layers.
	Base Base `json:"base"`
	// Layers are the frozen qcow2 disk layers, file names in Dir, the one on Base first.
	Layers []string `json:"layers"`
	// State is the file with the device state and, unless Memory is set, the memory.
	State string `json:"state"`
	// Memory, when set, is the file that holds the guest memory (a template's): VMs map it
	// instead of loading it from State.
	Memory string `json:"memory,omitempty"`
	// Key is the file with the SSH private key the saved guest accepts; HostKey is the
	// guest's SSH host key (an authorized_keys line). A restore uses both once, to give the
	// guest a new identity.
	Key     string `json:"key"`
	HostKey string `json:"host_key"`
	// Source is the id of the VM the snapshot was taken from.
	Source string `json:"source"`
	// Created is when the save finished; PausedSeconds how long the guest was paused for it.
	Created       time.Time `json:"created"`
	PausedSeconds float64   `json:"paused_seconds"`
}

// Base identifies the base image.
type Base struct {
	// Path is where the image was on the host that made the snapshot.
	Path string `json:"path"`
	// Size is its size in bytes, checked before a restore uses an image.
	Size int64 `json:"size"`
}

// ErrInvalid says a directory does not hold a usable snapshot.
var ErrInvalid = errors.New("invalid snapshot")

// Load reads the snapshot in dir and checks that its files are there.
func Load(dir string) (Snapshot, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Snapshot{}, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return Snapshot{}, fmt.Errorf("%w: manifest %s: %w", ErrInvalid, dir, err)
	}
	s.Dir = dir
	if err := s.Check(); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

// Check reports whether s is complete: a known version, sane sizes, and every file named
// present in Dir.
func (s Snapshot) Check() error {
	switch {
	case s.Version != Version:
		return fmt.Errorf("%w: manifest version %d, want %d", ErrInvalid, s.Version, Version)
	case s.Backend == "" || s.Accel == "":
		return fmt.Errorf("%w: no backend or acceleration", ErrInvalid)
	case s.CPUs < 1 || s.MemoryMiB < 1 || s.DiskMiB < 0:
		return fmt.Errorf("%w: size %d CPUs, %d MiB memory, %d MiB disk", ErrInvalid, s.CPUs, s.MemoryMiB, s.DiskMiB)
	case !filepath.IsAbs(s.Base.Path) || s.Base.Size <= 0:
		return fmt.Errorf("%w: base image %q of %d bytes", ErrInvalid, s.Base.Path, s.Base.Size)
	case s.State == "" || s.Key == "" || s.HostKey == "":
		return fmt.Errorf("%w: no state, key or host key", ErrInvalid)
	}
	for _, name := range s.names() {
		if name != filepath.Base(name) || name == "." || name == ".." || name == ManifestFile {
			return fmt.Errorf("%w: file name %q", ErrInvalid, name)
		}
		if _, err := os.Stat(filepath.Join(s.Dir, name)); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// names lists the file names the manifest refers to.
func (s Snapshot) names() []string {
	names := append(slices.Clone(s.Layers), s.State, s.Key)
	if s.Memory != "" {
		names = append(names, s.Memory)
	}
	return names
}

// Path is the absolute path of the file name in the snapshot.
func (s Snapshot) Path(name string) string { return filepath.Join(s.Dir, name) }

// LayerPaths are the paths of the layers, the one on the base image first.
func (s Snapshot) LayerPaths() []string {
	out := make([]string, len(s.Layers))
	for i, l := range s.Layers {
		out[i] = s.Path(l)
	}
	return out
}

// Files lists the snapshot's files (the manifest last): what to copy to move it.
func (s Snapshot) Files() []string {
	var out []string
	for _, n := range s.names() {
		out = append(out, s.Path(n))
	}
	return append(out, s.Path(ManifestFile))
}

// Size is what the snapshot takes on disk: the allocated bytes of its files (a sparse memory
// file counts only what the guest used).
func (s Snapshot) Size() (int64, error) {
	var total int64
	for _, f := range s.Files() {
		st, err := os.Stat(f)
		if err != nil {
			return 0, fmt.Errorf("snapshot size: %w", err)
		}
		total += allocated(st)
	}
	return total, nil
}

// Write writes the manifest (atomically, after the files it names), which completes the
// snapshot.
func (s Snapshot) Write() error {
	if err := s.Check(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("snapshot manifest: %w", err)
	}
	return fsutil.WriteFileAtomic(s.Path(ManifestFile), append(data, '\n'), 0o600)
}

// MoveTo moves the snapshot to dir, which must not exist: a rename when both are on one file
// system, else a copy (manifest last) and the removal of the original.
func (s Snapshot) MoveTo(dir string) (Snapshot, error) {
	if _, err := os.Lstat(dir); err == nil {
		return Snapshot{}, fmt.Errorf("move snapshot: %s: %w", dir, fs.ErrExist)
	}
	if err := os.Rename(s.Dir, dir); err == nil {
		return Load(dir)
	}
	moved, err := s.CopyTo(dir)
	if err != nil {
		return Snapshot{}, err
	}
	return moved, s.Remove()
}

// CopyTo copies the snapshot to the new directory dir (hard links where the file system
// allows: snapshot files are never changed in place).
func (s Snapshot) CopyTo(dir string) (Snapshot, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Snapshot{}, fmt.Errorf("copy snapshot: %w", err)
	}
	for _, f := range s.Files() {
		if err := LinkOrCopy(f, filepath.Join(dir, filepath.Base(f))); err != nil {
			return Snapshot{}, errors.Join(fmt.Errorf("copy snapshot: %w", err), os.RemoveAll(dir))
		}
	}
	return Load(dir)
}

// Remove deletes the snapshot's directory.
func (s Snapshot) Remove() error {
	if s.Dir == "" {
		return nil
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	return nil
}

// LinkOrCopy makes dst a hard link of src, or, across file systems, a copy with src's mode
// that stays sparse. dst must not exist.
func LinkOrCopy(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := dst + ".part"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	err = fsutil.CopySparse(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
