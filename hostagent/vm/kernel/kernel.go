// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package kernel fetches Debian's amd64 kernel package and turns it into what a microVM boots:
// the uncompressed vmlinux (for PVH entry) and the few modules the guest needs, in load order.
package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// Config says where to cache the kernel and which package and modules to take.
type Config struct {
	// CacheDir holds the kernel under CacheDir/kernel; it is reused across runs.
	CacheDir string
	// Package is the Debian package to fetch; a metapackage such as linux-image-amd64 is
	// resolved to the versioned package it depends on.
	Package string
	// Modules names the modules to keep (without .ko); their dependencies come along.
	Modules []string
	Logger  *slog.Logger
}

// DefaultConfig returns a Config for Debian's linux-image-amd64 and the modules a waggle guest
// needs to reach its ext4 root on virtio-blk and its virtio-net NIC on the microvm machine
// (crc32c_generic is a soft dependency of ext4 that modules.dep does not list).
func DefaultConfig(cacheDir string) Config {
	return Config{
		CacheDir: cacheDir,
		Package:  "linux-image-amd64",
		Modules:  []string{"crc32c_generic", "ext4", "virtio_mmio", "virtio_blk", "virtio_net"},
		Logger:   slog.Default(),
	}
}

// Kernel is a kernel ready to boot.
type Kernel struct {
	// Release is the kernel release, e.g. 6.1.0-56-amd64.
	Release string `json:"release"`
	// Vmlinux is the uncompressed ELF kernel.
	Vmlinux string `json:"vmlinux"`
	// Modules are the .ko files in the order they must be loaded.
	Modules []string `json:"modules"`
}

const manifestName = "kernel.json"

// Fetch returns the cached kernel, or downloads and prepares it with apt-get, dpkg-deb and
// depmod on the first call. Concurrent callers (also in other processes) wait for each other.
func Fetch(ctx context.Context, cfg Config) (*Kernel, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dir := filepath.Join(cfg.CacheDir, "kernel")
	unlock, err := fsutil.Lock(ctx, filepath.Join(dir, ".lock"), nil)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer unlock()
	if k, err := load(dir); err == nil {
		return k, nil
	}
	cfg.Logger.Info("fetching guest kernel", "package", cfg.Package, "cache", dir)
	k, err := build(ctx, cfg, dir)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	cfg.Logger.Info("guest kernel ready", "release", k.Release, "modules", len(k.Modules))
	return k, nil
}

func load(dir string) (*Kernel, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, err
	}
	for _, p := range append([]string{k.Vmlinux}, k.Modules...) {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return &k, nil
}

func build(ctx context.Context, cfg Config, dir string) (*Kernel, error) {
	pkg, err := resolvePackage(ctx, cfg.Package)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(dir, "fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if _, err := run(ctx, work, "apt-get", "download", pkg); err != nil {
		return nil, err
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
	}
	root := filepath.Join(work, "root")
	if _, err := run(ctx, work, "dpkg-deb", "-x", debs[0], root); err != nil {
		return nil, err
	}
	vmlinuzs, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuzs) != 1 {
		return nil, fmt.Errorf("%s: expected one boot/vmlinuz-*, found %d", pkg, len(vmlinuzs))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuzs[0]), "vmlinuz-")
	if _, err := run(ctx, work, "depmod", "-b", root, release); err != nil {
		return nil, err
	}
	modRoot := filepath.Join(root, "lib", "modules", release)
	depData, err := os.ReadFile(filepath.Join(modRoot, "modules.dep"))
	if err != nil {
		return nil, err
	}
	deps, err := ParseModulesDep(depData)
	if err != nil {
		return nil, err
	}
	order, err := LoadOrder(deps, cfg.Modules)
	if err != nil {
		return nil, err
	}

	out := filepath.Join(dir, release)
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(out, "modules"), 0o755); err != nil {
		return nil, err
	}
	k := &Kernel{Release: release, Vmlinux: filepath.Join(out, "vmlinux")}
	if err := ExtractVmlinux(ctx, vmlinuzs[0], k.Vmlinux); err != nil {
		return nil, err
	}
	for _, rel := range order {
		dst := filepath.Join(out, "modules", filepath.Base(rel))
		if err := os.Rename(filepath.Join(modRoot, rel), dst); err != nil {
			return nil, fmt.Errorf("keep module %s: %w", rel, err)
		}
		k.Modules = append(k.Modules, dst)
	}
	manifest, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, manifestName), manifest, 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// resolvePackage turns a metapackage (linux-image-amd64) into the versioned package it depends
// on; a package that depends on no linux-image-* is returned as is.
func resolvePackage(ctx context.Context, pkg string) (string, error) {
	out, err := run(ctx, "", "apt-cache", "depends", pkg)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(out)) {
		dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: ")
		if ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return pkg, nil
}

func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ErrNoPayload is returned when a vmlinuz holds no compressed kernel this package can unpack.
var ErrNoPayload = errors.New("no compressed kernel payload found")
