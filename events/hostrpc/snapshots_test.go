// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

func TestSnapshots(t *testing.T) {
	n := eventstest.Start(t)
	js := n.Log.JetStream()
	if err := hostrpc.SetupSnapshots(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	s := hostrpc.NewSnapshots(js)
	ctx := t.Context()
	src := t.TempDir()
	files := map[string][]byte{
		"memory":         bytes.Repeat([]byte{0, 1, 2, 0xff}, 300_000), // several chunks
		"layer-0.qcow2":  []byte("layer"),
		"snapshot.json":  []byte("{}\n"),
		"an-empty-file0": nil,
	}
	var paths []string
	var total int64
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		total += int64(len(data))
	}
	if _, err := s.Put(ctx, "env1", paths); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	got, err := s.Get(ctx, "env1", dir, total)
	if err != nil || got != total {
		t.Fatalf("Get: %d bytes, %v; want %d", got, err, total)
	}
	for name, data := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("%s: %d bytes, %v; want %d", name, len(b), err, len(data))
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("restored directory: %v %v", st, err)
	}

	errs := []struct {
		name    string
		env     string
		dir     string
		max     int64
		wantErr error
	}{
		{name: "too large", env: "env1", dir: filepath.Join(t.TempDir(), "d"), max: total - 1, wantErr: hostrpc.ErrSnapshotTooLarge},
		{name: "none stored", env: "env2", dir: filepath.Join(t.TempDir(), "d"), max: total, wantErr: hostrpc.ErrSnapshotNotFound},
		{name: "not an environment id", env: "a/../b", dir: filepath.Join(t.TempDir(), "d"), max: total, wantErr: hostrpc.ErrInvalidSnapshot},
		{name: "directory exists", env: "env1", dir: t.TempDir(), max: total, wantErr: os.ErrExist},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Get(ctx, tt.env, tt.dir, tt.max); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get: %v, want %v", err, tt.wantErr)
			}
			if !errors.Is(tt.wantErr, os.ErrExist) {
				if _, err := os.Lstat(tt.dir); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("after a failed Get, %s: %v", tt.dir, err)
				}
			}
		})
	}

	if _, err := s.Put(ctx, "env3", []string{paths[0], paths[0]}); !errors.Is(err, hostrpc.ErrInvalidSnapshot) {
		t.Fatalf("Put of one name twice: %v", err)
	}
	if _, err := s.Put(ctx, "env3", []string{src}); !errors.Is(err, hostrpc.ErrInvalidSnapshot) {
		t.Fatalf("Put of a directory: %v", err)
	}
	for range 2 { // deleting twice is not an error
		if err := s.Delete(ctx, "env1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, "env1", filepath.Join(t.TempDir(), "d"), total); !errors.Is(err, hostrpc.ErrSnapshotNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

// TestSnapshotsHostileObject: a stored object that names files outside the directory, or
// holds links, is refused and leaves nothing behind.
func TestSnapshotsHostileObject(t *testing.T) {
	n := eventstest.Start(t)
	js := n.Log.JetStream()
	ctx := t.Context()
	if err := hostrpc.SetupSnapshots(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	store, err := js.ObjectStore(ctx, hostrpc.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hdr  tar.Header
	}{
		{"path outside", tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Size: 1}},
		{"subdirectory", tar.Header{Typeflag: tar.TypeReg, Name: "a/b", Size: 1}},
		{"symlink", tar.Header{Typeflag: tar.TypeSymlink, Name: "memory", Linkname: "/etc/passwd"}},
		{"not tar", tar.Header{}},
	}
	s := hostrpc.NewSnapshots(js)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if tt.hdr.Name != "" {
				tw := tar.NewWriter(&buf)
				if err := tw.WriteHeader(&tt.hdr); err != nil {
					t.Fatal(err)
				}
				if tt.hdr.Size > 0 {
					if _, err := tw.Write([]byte("x")); err != nil {
						t.Fatal(err)
					}
				}
				if err := tw.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				buf.WriteString("garbage that is not a tar stream, long enough to read a header from it......")
				buf.Write(make([]byte, 600))
			}
			if _, err := store.PutBytes(ctx, "bad", buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "d")
			if _, err := s.Get(ctx, "bad", dir, 1<<20); !errors.Is(err, hostrpc.ErrInvalidSnapshot) {
				t.Fatalf("Get: %v, want %v", err, hostrpc.ErrInvalidSnapshot)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Fatalf("left behind: %v", left)
			}
		})
	}
}
