// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sparsePage is the unit CopySparse leaves out when it holds only zeros.
const sparsePage = 4096

// CopySparse makes dst (empty, open for writing) a copy of src that stays sparse: it copies
// only src's data regions (SEEK_DATA/SEEK_HOLE), and of those only the pages that are not all
// zero; everything else reads as zeros from dst's holes.
func CopySparse(dst, src *os.File) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if err := dst.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(int(src.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		for pos := data; pos < hole; {
			n, err := src.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if n == 0 {
				break
			}
			for p := 0; p < n; p += sparsePage {
				chunk := buf[p:min(p+sparsePage, n)]
				if allZero(chunk) {
					continue
				}
				if _, err := dst.WriteAt(chunk, pos+int64(p)); err != nil {
					return err
				}
			}
			pos += int64(n)
		}
		off = hole
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
