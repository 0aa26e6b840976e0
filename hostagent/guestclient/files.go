// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guestclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// DefaultMaxFileSize is the ReadFile limit used when maxSize is not positive.
const DefaultMaxFileSize = 64 << 20

// MaxListEntries bounds the result of ListFiles.
const MaxListEntries = 100_000

// FileInfo describes one entry of ListFiles.
type FileInfo struct {
	// Path is the entry's path: the listed path joined with the entry's path below it.
	Path    string
	Name    string
	Size    int64
	Mode    fs.FileMode
	ModTime time.Time
	IsDir   bool
}

// WriteFile writes data to the guest file at p as the sandbox user, creating missing parent
// directories and replacing the file's contents; the file gets permissions mode (0644 if 0).
// A relative p is relative to the sandbox user's home.
func (c *Client) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode) error {
	if p == "" {
		return fmt.Errorf("write file: %w: empty path", ErrInvalid)
	}
	if mode == 0 {
		mode = 0o644
	}
	_, err := withSFTP(ctx, c, func(sc *sftp.Client) (struct{}, error) {
		return struct{}{}, writeFile(sc, p, data, mode)
	})
	return err
}

func writeFile(sc *sftp.Client, p string, data []byte, mode fs.FileMode) error {
	if fi, err := sc.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("write file %q: %w", p, ErrIsDir)
	}
	if dir := path.Dir(p); dir != "." && dir != "/" {
		if err := sc.MkdirAll(dir); err != nil {
			return fileError("write file: create parent directory", dir, err)
		}
	}
	f, err := sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fileError("write file", p, err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		f.Close()
		return fileError("write file", p, err)
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		f.Close()
		return fileError("write file: chmod", p, err)
	}
	if err := f.Close(); err != nil {
		return fileError("write file", p, err)
	}
	return nil
}

// ReadFile reads the guest file at p as the sandbox user. It checks the size before the transfer
// and fails with ErrTooLarge beyond maxSize (DefaultMaxFileSize if maxSize <= 0); ErrNotFound,
// ErrIsDir, ErrNotRegular and ErrPermission say why else it failed.
func (c *Client) ReadFile(ctx context.Context, p string, maxSize int64) ([]byte, error) {
	if p == "" {
		return nil, fmt.Errorf("read file: %w: empty path", ErrInvalid)
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxFileSize
	}
	return withSFTP(ctx, c, func(sc *sftp.Client) ([]byte, error) { return readFile(sc, p, maxSize) })
}

func readFile(sc *sftp.Client, p string, maxSize int64) ([]byte, error) {
	fi, err := sc.Stat(p)
	if err != nil {
		return nil, fileError("read file", p, err)
	}
	switch {
	case fi.IsDir():
		return nil, fmt.Errorf("read file %q: %w", p, ErrIsDir)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("read file %q: %w (%s)", p, ErrNotRegular, fi.Mode().Type())
	case fi.Size() > maxSize:
		return nil, fmt.Errorf("read file %q: %w: %d bytes, limit %d", p, ErrTooLarge, fi.Size(), maxSize)
	}
	f, err := sc.Open(p)
	if err != nil {
		return nil, fileError("read file", p, err)
	}
	defer f.Close()
	buf := &limitBuffer{buf: make([]byte, 0, fi.Size()), max: maxSize}
	if _, err := f.WriteTo(buf); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("read file %q: %w: grew beyond the limit of %d bytes", p, ErrTooLarge, maxSize)
		}
		return nil, fileError("read file", p, err)
	}
	return buf.buf, nil
}

// limitBuffer is a buffer that refuses to grow beyond max bytes.
type limitBuffer struct {
	buf []byte
	max int64
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	if int64(len(b.buf)+len(p)) > b.max {
		return 0, ErrTooLarge
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// ListFiles lists the directory at p (its entries sorted by name; with recursive, everything
// below it in depth-first order, symlinks not followed). If p is not a directory the result is
// the entry for p itself. Subdirectories that cannot be read are skipped. More than
// MaxListEntries entries fail with ErrTooLarge.
func (c *Client) ListFiles(ctx context.Context, p string, recursive bool) ([]FileInfo, error) {
	if p == "" {
		p = "."
	}
	return withSFTP(ctx, c, func(sc *sftp.Client) ([]FileInfo, error) { return listFiles(sc, p, recursive) })
}

func listFiles(sc *sftp.Client, p string, recursive bool) ([]FileInfo, error) {
	fi, err := sc.Stat(p)
	if err != nil {
		return nil, fileError("list files", p, err)
	}
	if !fi.IsDir() {
		return []FileInfo{toFileInfo(p, fi)}, nil
	}
	tooMany := fmt.Errorf("list files %q: %w: more than %d entries", p, ErrTooLarge, MaxListEntries)
	var out []FileInfo
	if !recursive {
		entries, err := sc.ReadDir(p)
		if err != nil {
			return nil, fileError("list files", p, err)
		}
		if len(entries) > MaxListEntries {
			return nil, tooMany
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			out = append(out, toFileInfo(path.Join(p, e.Name()), e))
		}
		return out, nil
	}
	w := sc.Walk(p)
	for w.Step() {
		if w.Err() != nil || w.Path() == p {
			continue
		}
		if len(out) == MaxListEntries {
			return nil, tooMany
		}
		out = append(out, toFileInfo(w.Path(), w.Stat()))
	}
	return out, nil
}

func toFileInfo(p string, fi fs.FileInfo) FileInfo {
	return FileInfo{Path: p, Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime(), IsDir: fi.IsDir()}
}

// fileError wraps an SFTP error with the sentinel that matches it.
func fileError(op, p string, err error) error {
	var se *sftp.StatusError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %q: %w", op, p, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %q: %w", op, p, ErrPermission)
	case errors.Is(err, syscall.ENOTDIR), errors.As(err, &se) && strings.Contains(se.Error(), "not a directory"):
		return fmt.Errorf("%s %q: %w", op, p, ErrNotDir)
	case errors.Is(err, syscall.EISDIR), errors.As(err, &se) && strings.Contains(se.Error(), "is a directory"):
		return fmt.Errorf("%s %q: %w", op, p, ErrIsDir)
	case errors.As(err, &se):
		return fmt.Errorf("%s %q: %w", op, p, err)
	case errors.Is(err, sftp.ErrSSHFxConnectionLost), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s %q: %w: %w", op, p, ErrClosed, err)
	}
	return fmt.Errorf("%s %q: %w", op, p, err)
}

// withSFTP runs fn with the shared SFTP session, opening it if needed. If ctx ends first the
// session is closed (which fails fn and any concurrent file operation) and dropped.
func withSFTP[T any](ctx context.Context, c *Client, fn func(*sftp.Client) (T, error)) (T, error) {
	var mu sync.Mutex
	var cur *sftp.Client
	aborted := false
	return do(ctx, func() (T, error) {
		sc, err := c.sftpClient()
		if err != nil {
			var zero T
			return zero, err
		}
		mu.Lock()
		cur = sc
		if aborted {
			c.dropSFTP(sc)
		}
		mu.Unlock()
		return fn(sc)
	}, func() {
		mu.Lock()
		aborted = true
		if cur != nil {
			c.dropSFTP(cur)
		}
		mu.Unlock()
	}, nil)
}

func (c *Client) sftpClient() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.sftp != nil {
		return c.sftp, nil
	}
	sc, err := sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, fmt.Errorf("open sftp session: %w: %w", ErrClosed, err)
	}
	c.sftp = sc
	go func() {
		_ = sc.Wait() // however the session ended, the next file operation opens a new one
		c.dropSFTP(sc)
	}()
	return sc, nil
}

// dropSFTP closes sc and forgets it, so the next file operation opens a new session.
func (c *Client) dropSFTP(sc *sftp.Client) {
	c.mu.Lock()
	if c.sftp == sc {
		c.sftp = nil
	}
	c.mu.Unlock()
	sc.Close()
}
