// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysctl is one kernel setting; optional ones may be missing from the kernel.
type sysctl struct {
	key, value string
	optional   bool
}

// kernelSettings hide kernel pointers and logs from the sandbox user and restrict ptrace, BPF,
// perf, user namespaces and SysRq.
func kernelSettings() []sysctl {
	return []sysctl{
		{"kernel/kptr_restrict", "2", false},
		{"kernel/dmesg_restrict", "1", false},
		{"kernel/unprivileged_bpf_disabled", "1", false},
		{"kernel/perf_event_paranoid", "3", false},
		{"kernel/sysrq", "0", false},
		{"kernel/yama/ptrace_scope", "2", true},
		{"net/core/bpf_jit_harden", "2", true},
		{"user/max_user_namespaces", "0", true},
		{"fs/protected_symlinks", "1", true},
		{"fs/protected_hardlinks", "1", true},
		{"fs/protected_fifos", "2", true},
		{"fs/protected_regular", "2", true},
	}
}

// hardenKernel applies kernelSettings. A required setting that cannot be written fails the stage.
func (b *boot) hardenKernel() error {
	var errs []error
	for _, s := range kernelSettings() {
		err := os.WriteFile("/proc/sys/"+s.key, []byte(s.value), 0)
		switch {
		case err == nil:
		case s.optional && errors.Is(err, os.ErrNotExist):
			b.log.Debug("sysctl not available", "key", s.key)
		default:
			errs = append(errs, fmt.Errorf("sysctl %s=%s: %w", s.key, s.value, err))
		}
	}
	return errors.Join(errs...)
}

// lockdown sets no_new_privs on every thread of PID 1, then starts the thread that forks every
// child with an empty capability bounding set. Children inherit both: a sandbox process can never
// gain privileges through execve (set-user-ID binaries, file capabilities), even if the image has
// such files. PID 1 keeps its own effective capabilities (it still switches users and powers off).
// It also sets RLIMIT_NPROC, which binds every user but root.
func (b *boot) lockdown() error {
	n := b.cfg.MaxUserProcesses
	if err := unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		return fmt.Errorf("RLIMIT_NPROC: %w", err)
	}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	return b.reaper.startSpawner(func() error { return restrictThread(last) })
}

// restrictThread sets no_new_privs and empties the capability bounding set of the calling thread.
func restrictThread(lastCap int) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	for c := 0; c <= lastCap; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

func lastCap() (int, error) {
	raw, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(raw)))
}
