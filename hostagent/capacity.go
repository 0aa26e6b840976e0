// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Defaults of the capacity a host offers (see HostCapacity).
const (
	// CPUOvercommit is how many virtual CPUs a host offers per CPU of its own: most guests
	// sit idle most of the time (E2B's orchestrator uses the same ratio).
	CPUOvercommit = 4
	// DefaultMaxEnvironments is the most VMs a host runs at once unless told otherwise.
	DefaultMaxEnvironments = 32
	// fallbackMemoryMiB is the memory assumed when the host's cannot be read.
	fallbackMemoryMiB = 8192
)

// MemoryReserveMiB is the memory a host of totalMiB keeps for its own use (the OS, the host
// agent, QEMU's own overhead per VM, the other roles of `waggle up`): a tenth, at least 1 GiB
// and at most 4 GiB.
func MemoryReserveMiB(totalMiB int) int { return min(max(totalMiB/10, 1024), 4096) }

// HostCapacity is the capacity a host offers by default: its memory (the smaller of
// /proc/meminfo's MemTotal and the memory.max of the cgroup it runs in) less MemoryReserveMiB,
// its CPUs times CPUOvercommit, and DefaultMaxEnvironments VMs. When the memory cannot be read,
// it assumes 8 GiB.
func HostCapacity() Capacity {
	total, err := hostMemoryMiB("/proc/meminfo", "/sys/fs/cgroup/memory.max")
	if err != nil {
		total = fallbackMemoryMiB
	}
	return capacityFor(total, runtime.NumCPU())
}

// capacityFor is the default capacity of a host with totalMiB of memory and cpus CPUs.
func capacityFor(totalMiB, cpus int) Capacity {
	return Capacity{
		MemoryMiB:       max(totalMiB-MemoryReserveMiB(totalMiB), 256),
		CPUs:            max(cpus, 1) * CPUOvercommit,
		MaxEnvironments: DefaultMaxEnvironments,
	}
}

// hostMemoryMiB reads MemTotal from meminfo and lowers it to the cgroup limit in memoryMax
// (cgroup v2; "max" or a missing file mean no limit).
func hostMemoryMiB(meminfo, memoryMax string) (int, error) {
	f, err := os.Open(meminfo)
	if err != nil {
		return 0, fmt.Errorf("host memory: %w", err)
	}
	defer f.Close()
	total := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return 0, fmt.Errorf("host memory: %s: %q: %w", meminfo, sc.Text(), err)
			}
			total = kb >> 10
		}
	}
	if total <= 0 {
		return 0, fmt.Errorf("host memory: no MemTotal in %s", meminfo)
	}
	if data, err := os.ReadFile(memoryMax); err == nil {
		if limit, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil && limit > 0 {
			total = min(total, int(limit>>20))
		}
	}
	return total, nil
}

// Share is c divided among n host agents on one machine (as `waggle up --hosts n` runs them),
// each keeping at least one environment's worth.
func (c Capacity) Share(n int) Capacity {
	if n <= 1 {
		return c
	}
	return Capacity{MemoryMiB: max(c.MemoryMiB/n, 256), CPUs: max(c.CPUs/n, 1), MaxEnvironments: max(c.MaxEnvironments/n, 1)}
}
