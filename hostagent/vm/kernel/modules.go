// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package kernel

import (
	"fmt"
	"path"
	"strings"
)

// ParseModulesDep parses depmod's modules.dep: one line per module, "path.ko: dep.ko dep.ko",
// and returns each module's path and dependency paths keyed by module name ("virtio_net").
// modules.dep lists dependencies so that the last-listed one must load first.
func ParseModulesDep(data []byte) (map[string]Module, error) {
	mods := make(map[string]Module)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return nil, fmt.Errorf("modules.dep line %d: missing \"module:\"", i+1)
		}
		m := Module{Path: file, Deps: strings.Fields(rest)}
		mods[ModuleName(file)] = m
	}
	return mods, nil
}

// Module is one modules.dep entry.
type Module struct {
	Path string   // relative to /lib/modules/<release>
	Deps []string // as listed: the last one loads first
}

// ModuleName returns the module name of a module path: kernel/fs/ext4/ext4.ko -> ext4.
func ModuleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// LoadOrder returns the module paths to load, dependencies first, for the wanted modules
// (names as given to modprobe, in the order given), each path once.
func LoadOrder(mods map[string]Module, wanted []string) ([]string, error) {
	var order []string
	seen := make(map[string]bool)
	var visit func(name string, depth int) error
	visit = func(name string, depth int) error {
		if seen[name] {
			return nil
		}
		if depth > len(mods) {
			return fmt.Errorf("module %s: dependency cycle", name)
		}
		m, ok := mods[name]
		if !ok {
			return fmt.Errorf("module %s: not in modules.dep", name)
		}
		for i := len(m.Deps) - 1; i >= 0; i-- {
			if err := visit(ModuleName(m.Deps[i]), depth+1); err != nil {
				return err
			}
		}
		seen[name] = true
		order = append(order, m.Path)
		return nil
	}
	for _, name := range wanted {
		if err := visit(ModuleName(name), 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}
