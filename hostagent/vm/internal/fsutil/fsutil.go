// Package fsutil holds the small file-system helpers the VM layer's caches share: an exclusive
// lock file and atomic writes.
package fsutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Lock takes an exclusive flock on path (creating it), waiting until it is free or ctx ends.
// The returned function releases it.
func Lock(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	var flockErr error
	done := make(chan struct{}) // closed when flockErr is set
	go func() {
		flockErr = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		close(done)
	}()
	select {
	case <-done:
		if flockErr != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, flockErr)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file makes a late flock harmless: the lock dies with the descriptor, so
		// whether the flock succeeded or failed no longer matters.
		go func() { <-done; f.Close() }()
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
}

// WriteFileAtomic writes data to path through a temporary file in the same directory and a
// rename, so readers see either the old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
