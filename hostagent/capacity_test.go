// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCapacityFor(t *testing.T) {
	tests := []struct {
		name   string
		memMiB int
		cpus   int
		want   Capacity
	}{
		{"this machine: 24 GiB, 2 cores", 24 << 10, 2, Capacity{MemoryMiB: 24<<10 - 2457, CPUs: 8, MaxEnvironments: DefaultMaxEnvironments}},
		{"small: reserve at least 1 GiB", 4 << 10, 1, Capacity{MemoryMiB: 3 << 10, CPUs: 4, MaxEnvironments: DefaultMaxEnvironments}},
		{"large: reserve at most 4 GiB", 256 << 10, 64, Capacity{MemoryMiB: 252 << 10, CPUs: 256, MaxEnvironments: DefaultMaxEnvironments}},
		{"tiny: still one small environment", 512, 0, Capacity{MemoryMiB: 256, CPUs: 4, MaxEnvironments: DefaultMaxEnvironments}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capacityFor(tt.memMiB, tt.cpus); got != tt.want {
				t.Errorf("capacityFor(%d MiB, %d cpus) = %+v, want %+v", tt.memMiB, tt.cpus, got, tt.want)
			}
		})
	}
}

func TestHostMemory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meminfo := write("meminfo", "MemTotal:       24576000 kB\nMemFree:         1000 kB\n")
	tests := []struct {
		name, meminfo, memoryMax string
		want                     int
		err                      bool
	}{
		{"no cgroup limit file", meminfo, filepath.Join(dir, "none"), 24000, false},
		{"cgroup without limit", meminfo, write("max-none", "max\n"), 24000, false},
		{"cgroup limit lower", meminfo, write("max-4g", "4294967296\n"), 4096, false},
		{"cgroup limit higher", meminfo, write("max-1t", "1099511627776\n"), 24000, false},
		{"no meminfo", filepath.Join(dir, "absent"), "", 0, true},
		{"no MemTotal", write("meminfo-bad", "MemFree: 1 kB\n"), "", 0, true},
		{"garbled MemTotal", write("meminfo-garbled", "MemTotal: lots kB\n"), "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostMemoryMiB(tt.meminfo, tt.memoryMax)
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("hostMemoryMiB = %d, %v; want %d (error %v)", got, err, tt.want, tt.err)
			}
		})
	}
	if c := HostCapacity(); c.MemoryMiB < 256 || c.CPUs < CPUOvercommit {
		t.Errorf("HostCapacity on this machine: %+v", c)
	}
}

func TestCapacityShare(t *testing.T) {
	c := Capacity{MemoryMiB: 22000, CPUs: 8, MaxEnvironments: 32}
	if got := c.Share(1); got != c {
		t.Errorf("Share(1) = %+v", got)
	}
	if got, want := c.Share(3), (Capacity{MemoryMiB: 7333, CPUs: 2, MaxEnvironments: 10}); got != want {
		t.Errorf("Share(3) = %+v, want %+v", got, want)
	}
	if got := (Capacity{MemoryMiB: 300, CPUs: 1, MaxEnvironments: 1}).Share(4); got.MemoryMiB < 256 || got.CPUs < 1 || got.MaxEnvironments < 1 {
		t.Errorf("Share of a small host: %+v", got)
	}
}
