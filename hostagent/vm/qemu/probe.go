// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrKVMUnusable says KVM cannot boot the guest kernel on this host (no /dev/kvm, no access,
// or a KVM, such as kvm-pvm, that cannot run a stock kernel).
var ErrKVMUnusable = errors.New("kvm cannot boot the guest kernel")

// ProbeKVM boots kernel under KVM with no root file system and reports whether it got as far
// as the kernel's "unable to mount root" panic within timeout. A working KVM gets there in
// well under a second; kvm-pvm aborts or stalls. The probe never runs longer than timeout.
// QEMU runs as cred (nil: as this process, which must then not be root).
func ProbeKVM(ctx context.Context, binary, kernel string, timeout time.Duration, cred *syscall.Credential) error {
	if cred == nil && os.Geteuid() == 0 {
		return ErrRoot
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKVMUnusable, err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary,
		"-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "128", "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", kernel, "-append", "console=ttyS0 panic=-1 reboot=t root=/dev/nonexistent",
		"-serial", "stdio")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: unix.SIGKILL, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if strings.Contains(out.String(), "Kernel panic") {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: no panic within %s", ErrKVMUnusable, timeout)
	}
	if runErr == nil {
		return fmt.Errorf("%w: qemu exited without a panic: %s", ErrKVMUnusable, lastLine(out.String()))
	}
	return fmt.Errorf("%w: %w: %s", ErrKVMUnusable, runErr, lastLine(out.String()))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// HostTSCKHz reads the host's TSC frequency in kHz for tsc_early_khz, or returns 0 when it
// cannot tell (the guest then calibrates, which sometimes hangs under TCG; the boot watchdog
// retries such boots).
func HostTSCKHz() int {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return int(mhz * 1000)
	}
	return 0
}
