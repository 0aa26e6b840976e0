// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// Build returns the path of an initramfs in cacheDir/initramfs with init as /init and the
// modules (in load order) under /lib/modules, listed in /lib/modules.order. The archive is
// named by the hash of its content, so a changed init or kernel makes a new one and an
// unchanged one is reused.
func Build(ctx context.Context, cacheDir, init string, modules []string) (string, error) {
	var buf bytes.Buffer
	if err := Write(&buf, init, modules); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	dir := filepath.Join(cacheDir, "initramfs")
	path := filepath.Join(dir, hex.EncodeToString(sum[:12])+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	return path, nil
}

// Write writes the initramfs archive to buf.
func Write(buf *bytes.Buffer, init string, modules []string) error {
	w := NewWriter(buf)
	data, err := os.ReadFile(init)
	if err != nil {
		return fmt.Errorf("initramfs: init: %w", err)
	}
	for _, d := range []string{"dev", "proc", "sys", "lib", "lib/modules"} {
		if err := w.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := w.File("init", 0o755, data); err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range modules {
		data, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("initramfs: module: %w", err)
		}
		name := filepath.Base(m)
		if err := w.File("lib/modules/"+name, 0o644, data); err != nil {
			return err
		}
		order.WriteString(name + "\n")
	}
	if err := w.File("lib/modules.order", 0o644, []byte(order.String())); err != nil {
		return err
	}
	return w.Close()
}
