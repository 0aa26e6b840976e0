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
	"slices"
	"strconv"
	"strings"
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

// ErrUnavailable says the host has no cgroup v2 hierarchy offering the cpu and memory
// controllers where root's parent is (a cgroup v1 or hybrid host, or no cgroup file system).
var ErrUnavailable = errors.New("cgroup v2 with the cpu and memory controllers is not available")

// Setup prepares root for per-VM groups: its parent must be a cgroup v2 group offering the cpu
// and memory controllers (else ErrUnavailable, wrapped); root is created and both controllers
// are enabled for its children. Any other error is a hierarchy this process cannot set up (no
// permission, controllers taken). Setup is idempotent.
func Setup(root string) error {
	parent := filepath.Dir(root)
	data, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnavailable, parent, err)
	}
	for _, c := range []string{"cpu", "memory"} {
		if !slices.Contains(strings.Fields(string(data)), c) {
			return fmt.Errorf("%w at %s: it offers %q", ErrUnavailable, parent, strings.TrimSpace(string(data)))
		}
	}
	if err := os.Mkdir(root, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroup %s: %w", root, err)
	}
	for _, dir := range []string{parent, root} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0); err != nil {
			return fmt.Errorf("cgroup %s: enable the cpu and memory controllers: %w", dir, err)
		}
	}
	return nil
}

// Create makes root/name with the limits, after Setup of root.
func Create(root, name string, l Limits) (*Group, error) {
	if err := Setup(root); err != nil {
		return nil, err
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
