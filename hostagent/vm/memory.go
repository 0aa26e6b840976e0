// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// loadMemory copies a template's memory file into a sealed memfd: VMs map it privately, so
// they share every page none of them wrote, and the seals (no writes, no resizing, no further
// seals) keep any one QEMU, whatever user it runs as, from changing what the others see. Only
// the pages that hold data are copied; the rest stay holes (zero pages).
func loadMemory(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("waggle-template", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "template memory")
	if err := fsutil.CopySparse(mem, src); err != nil {
		mem.Close()
		return nil, err
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return mem, nil
}
