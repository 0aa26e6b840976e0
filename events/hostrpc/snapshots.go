// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// A paused environment's snapshot (a directory of flat files: saved memory and device state,
// frozen disk layers, key, manifest) can also live in a JetStream object store, so that
// another host can restore it when its own host has failed (`--snapshot-store objects`). It is
// one object per environment, named by the environment's id: a tar stream of the directory's
// files (the object store cuts it into chunks). Only host agents may read or write the bucket
// (events/access): a snapshot holds the guest's memory and is as secret as the VM.
const (
	// SnapshotBucket is the object store bucket of paused environments' snapshots.
	SnapshotBucket = "waggle_snapshots"
	// SnapshotMaxBytes is the most one stored snapshot may hold (its files' sizes together):
	// the memory of the largest environment (16 GiB) plus its disk layers.
	SnapshotMaxBytes = 32 << 30
)

// storedPrefix starts the location (events.Paused.Location) of a snapshot also in the store.
const storedPrefix = "objects:"

// StoredLocation is the location of env's snapshot in the store.
func StoredLocation(env string) string { return storedPrefix + env }

// StoredName is the name in the store of the snapshot at location, and whether it is there
// at all (a "host:" location is not).
func StoredName(location string) (string, bool) {
	name, ok := strings.CutPrefix(location, storedPrefix)
	return name, ok && events.ValidID(name) == nil
}

// Errors of Snapshots that callers branch on.
var (
	ErrSnapshotNotFound = errors.New("snapshot not in the object store")
	ErrSnapshotTooLarge = errors.New("snapshot too large")
	ErrInvalidSnapshot  = errors.New("invalid stored snapshot")
)

// SetupSnapshots creates the snapshot bucket, or brings its settings back (the admin's setup).
// Objects have no age limit: a paused environment's snapshot lives until it is destroyed or
// resumed elsewhere.
func SetupSnapshots(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      SnapshotBucket,
		Description: "waggle paused environments' snapshots, for a restore on another host",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return fmt.Errorf("set up snapshot bucket %s: %w", SnapshotBucket, err)
	}
	return nil
}

// Snapshots puts, gets and deletes stored snapshots. It binds to the bucket on first use.
type Snapshots struct{ b lazyBucket }

// NewSnapshots returns the stored snapshots of the JetStream domain js talks to.
func NewSnapshots(js jetstream.JetStream) *Snapshots {
	return &Snapshots{b: lazyBucket{js: js, name: SnapshotBucket}}
}

// Put stores the files (paths of regular files, each name once) as env's snapshot, replacing
// one stored before, and returns the bytes stored.
func (s *Snapshots) Put(ctx context.Context, env string, files []string) (int64, error) {
	if err := events.ValidID(env); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}
	store, err := s.b.open(ctx)
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() { // ends when Put stops reading
		defer close(done)
		pw.CloseWithError(writeTar(pw, files))
	}()
	info, err := store.Put(ctx, jetstream.ObjectMeta{Name: env}, pr)
	pr.CloseWithError(errors.New("put ended"))
	<-done
	if err != nil {
		return 0, fmt.Errorf("put snapshot of %s: %w", env, err)
	}
	return int64(info.Size), nil
}

// writeTar writes files as a tar stream of flat names.
func writeTar(w io.Writer, files []string) error {
	tw := tar.NewWriter(w)
	var total int64
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		if seen[name] {
			return fmt.Errorf("%w: file name %q twice", ErrInvalidSnapshot, name)
		}
		seen[name] = true
		if err := addFile(tw, f, name, &total); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, path, name string, total *int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("snapshot file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrInvalidSnapshot, path)
	}
	if *total += st.Size(); *total > SnapshotMaxBytes {
		return fmt.Errorf("%w: more than %d bytes", ErrSnapshotTooLarge, int64(SnapshotMaxBytes))
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: 0o600,
		ModTime: st.ModTime(), Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("snapshot file %s: %w", name, err)
	}
	if _, err := io.CopyN(tw, f, st.Size()); err != nil {
		return fmt.Errorf("snapshot file %s: %w", name, err)
	}
	return nil
}

// Get writes env's stored snapshot into dir, which must not exist (created 0700 with its
// parents, files 0600),
// and returns the bytes read. The stored files must be flat regular files of at most max bytes
// together: else ErrInvalidSnapshot or ErrSnapshotTooLarge, and dir is removed. No stored
// snapshot is ErrSnapshotNotFound.
func (s *Snapshots) Get(ctx context.Context, env, dir string, max int64) (int64, error) {
	if err := events.ValidID(env); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}
	store, err := s.b.open(ctx)
	if err != nil {
		return 0, err
	}
	obj, err := store.Get(ctx, env)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, fmt.Errorf("get snapshot of %s: %w", env, ErrSnapshotNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("get snapshot of %s: %w", env, err)
	}
	defer obj.Close()
	if err := errors.Join(os.MkdirAll(filepath.Dir(dir), 0o700), os.Mkdir(dir, 0o700)); err != nil {
		return 0, fmt.Errorf("get snapshot of %s: %w", env, err)
	}
	// The object's reader checks its digest at the end, which readTar reaches.
	n, err := readTar(obj, dir, max)
	if err != nil {
		return 0, errors.Join(fmt.Errorf("get snapshot of %s: %w", env, err), os.RemoveAll(dir))
	}
	return n, nil
}

// readTar writes the tar stream r's files into dir.
func readTar(r io.Reader, dir string, max int64) (int64, error) {
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
		}
		switch {
		case h.Typeflag != tar.TypeReg:
			return 0, fmt.Errorf("%w: %q is not a regular file", ErrInvalidSnapshot, h.Name)
		case h.Name != filepath.Base(h.Name) || h.Name == "." || h.Name == "..":
			return 0, fmt.Errorf("%w: file name %q", ErrInvalidSnapshot, h.Name)
		case h.Size < 0 || total+h.Size > max:
			return 0, fmt.Errorf("%w: more than %d bytes", ErrSnapshotTooLarge, max)
		}
		total += h.Size
		if err := extract(tr, filepath.Join(dir, h.Name), h.Size); err != nil {
			return 0, err
		}
	}
	// Drain to the end so the object's digest is checked.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}
	return total, nil
}

func extract(r io.Reader, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSnapshot, err) // a name twice
	}
	_, err = io.CopyN(f, r, size)
	return errors.Join(err, f.Close())
}

// Delete removes env's stored snapshot; none stored is not an error.
func (s *Snapshots) Delete(ctx context.Context, env string) error {
	if err := events.ValidID(env); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSnapshot, err)
	}
	store, err := s.b.open(ctx)
	if err != nil {
		return err
	}
	if err := store.Delete(ctx, env); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete snapshot of %s: %w", env, err)
	}
	return nil
}
