// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package cgroup puts a VM's hypervisor process into its own cgroup v2 group with CPU and
// memory limits.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// DefaultRoot is where waggle's groups live: one child group per VM.
const DefaultRoot = "/sys/fs/cgroup/waggle"

// Limits bound one VM.
type Limits struct {
	// CPUs is the number of CPUs worth of time per period (cpu.max); 0 means no limit.
	CPUs int
	// MemoryBytes is memory.max; 0 means no limit.
	MemoryBytes int64
}

// Group is a created cgroup.
type Group struct {
	Path string
	fd   *os.File
}

// ErrUnavailable is returned when the host has no writable cgroup v2 hierarchy.
var ErrUnavailable = errors.New("cgroup v2 is not available or not writable")

// Create makes root/name with the limits. It returns ErrUnavailable (wrapped) when the root's
// parent is not a cgroup v2 hierarchy that this process may change.
func Create(root, name string, l Limits) (*Group, error) {
	parent := filepath.Dir(root)
	if _, err := os.Stat(filepath.Join(parent, "cgroup.controllers")); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, parent)
	}
	if err := os.Mkdir(root, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, dir := range []string{parent, root} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0); err != nil {
			return nil, fmt.Errorf("%w: enable controllers in %s: %w", ErrUnavailable, dir, err)
		}
	}
	path := filepath.Join(root, name)
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", path, err)
	}
	g := &Group{Path: path}
	if l.MemoryBytes > 0 {
		if err := g.write("memory.max", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return nil, errors.Join(err, g.Remove())
		}
	}
	if l.CPUs > 0 {
		const period = 100000
		if err := g.write("cpu.max", fmt.Sprintf("%d %d", l.CPUs*period, period)); err != nil {
			return nil, errors.Join(err, g.Remove())
		}
	}
	fd, err := os.Open(path)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cgroup %s: %w", path, err), g.Remove())
	}
	g.fd = fd
	return g, nil
}

func (g *Group) write(file, value string) error {
	if err := os.WriteFile(filepath.Join(g.Path, file), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup %s: %s=%s: %w", g.Path, file, value, err)
	}
	return nil
}

// FD is the group directory's descriptor, for SysProcAttr.CgroupFD so a process starts in it.
func (g *Group) FD() int { return int(g.fd.Fd()) }

// Remove deletes the group; it must be empty (its processes have exited).
func (g *Group) Remove() error {
	if g.fd != nil {
		g.fd.Close()
	}
	return RemovePath(g.Path)
}

// RemovePath deletes a group directory by path (e.g. a dead VM's, found again after a
// restart). A missing group is not an error.
func RemovePath(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	return nil
}
