// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fake writes a complete snapshot with small files into a new directory.
func fake(t testing.TB) Snapshot {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snap")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := Snapshot{
		Dir: dir, Version: Version, Backend: "qemu", Hypervisor: "QEMU 7.2", Accel: "tcg",
		CPUs: 1, MemoryMiB: 512, DiskMiB: 2048, Base: Base{Path: "/images/base.ext4", Size: 1 << 30},
		Layers: []string{LayerFile(0), LayerFile(1)}, State: StateFile, Key: KeyFile,
		HostKey: "ssh-ed25519 AAAA", Source: "vm-1", Created: time.Now().UTC(),
	}
	for _, name := range s.names() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadWriteMove(t *testing.T) {
	s := fake(t)
	got, err := Load(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dir != s.Dir || got.Source != "vm-1" || len(got.Layers) != 2 || got.LayerPaths()[1] != filepath.Join(s.Dir, "layer-1.qcow2") {
		t.Errorf("loaded %+v", got)
	}
	if files := got.Files(); len(files) != 5 || filepath.Base(files[len(files)-1]) != ManifestFile {
		t.Errorf("files %q", files)
	}
	if size, err := got.Size(); err != nil || size == 0 {
		t.Errorf("size %d %v", size, err)
	}

	copied, err := got.CopyTo(filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(got.Dir); err != nil {
		t.Errorf("original after copy: %v", err)
	}
	moved, err := copied.MoveTo(filepath.Join(t.TempDir(), "moved"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(copied.Dir); !os.IsNotExist(err) {
		t.Errorf("moved snapshot still at %s: %v", copied.Dir, err)
	}
	if moved.HostKey != s.HostKey {
		t.Errorf("moved: %+v", moved)
	}
	if _, err := moved.MoveTo(got.Dir); !errors.Is(err, os.ErrExist) {
		t.Errorf("move onto an existing directory: %v", err)
	}
	if err := moved.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(moved.Dir); !errors.Is(err, ErrInvalid) {
		t.Errorf("removed snapshot loads: %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *Snapshot)
		want   string
	}{
		{"version", func(s *Snapshot) { s.Version = 2 }, "version 2"},
		{"no backend", func(s *Snapshot) { s.Backend = "" }, "backend"},
		{"no memory", func(s *Snapshot) { s.MemoryMiB = 0 }, "size"},
		{"relative base", func(s *Snapshot) { s.Base.Path = "base.ext4" }, "base image"},
		{"no host key", func(s *Snapshot) { s.HostKey = "" }, "host key"},
		{"path in a name", func(s *Snapshot) { s.State = "../state" }, "file name"},
		{"absolute name", func(s *Snapshot) { s.Layers[0] = "/etc/passwd" }, "file name"},
		{"manifest as a file", func(s *Snapshot) { s.Key = ManifestFile }, "file name"},
		{"missing file", func(s *Snapshot) { s.Memory = "memory" }, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fake(t)
			tt.change(&s)
			data, _ := json.Marshal(s)
			if err := os.WriteFile(filepath.Join(s.Dir, ManifestFile), data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(s.Dir)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: %v, want ErrInvalid mentioning %q", err, tt.want)
			}
			if err := s.Write(); !errors.Is(err, ErrInvalid) {
				t.Errorf("Write: %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty directory: %v", err)
	}
}

// FuzzLoad: whatever manifest a snapshot directory holds (it may come from another host), Load
// accepts only one whose files are plain names inside the directory.
func FuzzLoad(f *testing.F) {
	s := fake(f)
	good, _ := os.ReadFile(filepath.Join(s.Dir, ManifestFile))
	f.Add(good)
	f.Add([]byte(`{"version":1,"layers":["../x"]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(s.Dir, ManifestFile), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(s.Dir)
		if err != nil {
			return
		}
		for _, f := range got.Files() {
			if filepath.Dir(f) != s.Dir {
				t.Fatalf("accepted a file outside the snapshot: %s", f)
			}
		}
	})
}
