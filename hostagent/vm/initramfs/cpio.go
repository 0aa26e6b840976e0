// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package initramfs writes the guest's initramfs: a newc cpio archive holding /init (the static
// waggle-init binary), the kernel modules in /lib/modules and their load order in
// /lib/modules.order. Archives are cached by content hash.
package initramfs

import (
	"fmt"
	"io"
	"strings"
)

// Writer writes a cpio archive in the "newc" format the kernel unpacks into its rootfs.
type Writer struct {
	w     io.Writer
	ino   uint32
	off   int64
	err   error
	close bool
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, ino: 1} }

// Mode bits of newc headers.
const (
	ModeDir  = 0o040000
	ModeFile = 0o100000
)

// Dir adds a directory entry.
func (w *Writer) Dir(name string, perm uint32) error {
	return w.entry(name, ModeDir|perm&0o7777, nil)
}

// File adds a regular file with the given content.
func (w *Writer) File(name string, perm uint32, data []byte) error {
	return w.entry(name, ModeFile|perm&0o7777, data)
}

// Close writes the trailer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.close {
		return w.err
	}
	w.close = true
	if err := w.entry("TRAILER!!!", 0, nil); err != nil {
		return err
	}
	// The kernel does not need it, but cpio(1) and most readers expect 512-byte blocks.
	w.pad(512)
	return w.err
}

func (w *Writer) entry(name string, mode uint32, data []byte) error {
	if w.err != nil {
		return w.err
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio: bad name %q", name)
	}
	nlink := 1
	if mode&ModeDir != 0 {
		nlink = 2
	}
	ino := w.ino
	w.ino++
	if name == "TRAILER!!!" {
		ino = 0
		nlink = 1
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	w.write([]byte(hdr))
	w.write([]byte(name + "\x00"))
	w.pad(4)
	w.write(data)
	w.pad(4)
	return w.err
}

// write writes p unless an earlier write failed, and records its error in w.err.
func (w *Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("cpio: %w", err)
	}
}

// pad writes zeros up to the next multiple of align. Like write, it records an error in w.err.
func (w *Writer) pad(align int64) {
	if rem := w.off % align; rem != 0 {
		w.write(make([]byte, align-rem))
	}
}
