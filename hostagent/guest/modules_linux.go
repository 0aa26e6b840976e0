// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// loadModules loads the kernel modules named in ModulesOrder from ModulesDir, in that order.
// Modules already present (built in, or loaded before) are skipped.
func (b *boot) loadModules() error {
	f, err := os.Open(b.cfg.ModulesOrder)
	if errors.Is(err, os.ErrNotExist) {
		b.log.Debug("no module list", "path", b.cfg.ModulesOrder)
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if err := loadModule(filepath.Join(b.cfg.ModulesDir, filepath.Base(name))); err != nil {
			return err
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", b.cfg.ModulesOrder, err)
	}
	b.log.Debug("modules loaded", "count", n)
	return nil
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("module %s: %w", path, err)
	}
	defer unix.Close(fd)
	err = unix.FinitModule(fd, "", 0)
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		return nil
	case errors.Is(err, unix.ENOENT):
		// finit_module reports an unresolved symbol as ENOENT: a dependency was not loaded first.
		return fmt.Errorf("module %s: unknown symbol (check the load order): %w", filepath.Base(path), err)
	}
	return fmt.Errorf("module %s: %w", filepath.Base(path), err)
}
