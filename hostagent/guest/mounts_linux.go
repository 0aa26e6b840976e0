// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mountSpec is one mount the init performs.
type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode // of the mount point, if it must be created
}

func mountAll(specs []mountSpec) error {
	for _, m := range specs {
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			return err
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) { // EBUSY: already mounted (devtmpfs automount)
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

const nosuidNodev = unix.MS_NOSUID | unix.MS_NODEV

// earlyMounts mounts /proc, /sys and /dev in the initramfs and attaches fds 0-2 to the console.
func (b *boot) earlyMounts() error {
	err := mountAll([]mountSpec{
		{"proc", "/proc", "proc", nosuidNodev | unix.MS_NOEXEC, "", 0o555},
		{"sysfs", "/sys", "sysfs", nosuidNodev | unix.MS_NOEXEC, "", 0o555},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
	})
	if err != nil {
		return err
	}
	fd, err := unix.Open(b.cfg.Console, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open console: %w", err)
	}
	for target := range 3 {
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("console on fd %d: %w", target, err)
		}
	}
	return unix.Close(fd)
}

// waitRootDevice polls for the root disk's device node, which devtmpfs creates when virtio_blk
// probes the disk, in 2 ms steps.
func (b *boot) waitRootDevice() error {
	return waitFor(b.cfg.DeviceTimeout, func() bool {
		_, err := os.Stat(b.cfg.RootDevice)
		return err == nil
	}, b.cfg.RootDevice+" did not appear")
}

// waitFor polls ok every 2 ms until it is true or timeout passes.
func waitFor(timeout time.Duration, ok func() bool, what string) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s within %s", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// mountRoot mounts the root disk on NewRoot. It is nosuid: no set-user-ID binary of the image can
// give the sandbox user root.
func (b *boot) mountRoot() error {
	return mountAll([]mountSpec{{b.cfg.RootDevice, b.cfg.NewRoot, b.cfg.RootFSType, nosuidNodev, "", 0o755}})
}

// switchRoot moves /dev, /proc and /sys into the new root, moves the new root onto / and chroots
// into it. The initramfs stays in memory underneath; the init keeps running from it.
func (b *boot) switchRoot() error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		target := filepath.Join(b.cfg.NewRoot, m)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", m, err)
		}
	}
	if err := unix.Chdir(b.cfg.NewRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move new root onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// lateMounts mounts the file systems the root image expects at run time.
func (b *boot) lateMounts() error {
	err := mountAll([]mountSpec{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
		{"shm", "/dev/shm", "tmpfs", nosuidNodev, "mode=1777", 0o1777},
		{"tmpfs", "/tmp", "tmpfs", nosuidNodev, "mode=1777", 0o1777},
		{"tmpfs", "/run", "tmpfs", nosuidNodev | unix.MS_NOEXEC, "mode=0755", 0o755},
	})
	if err != nil {
		return err
	}
	for link, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// writeHosts makes sure the hosts file maps hostname (and no other name) to 127.0.1.1, so that
// tools resolving their own host name do not wait for DNS.
func writeHosts(path, hostname string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var content strings.Builder
	for line := range strings.Lines(string(old)) {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "127.0.1.1" {
			if f[1] == hostname {
				return nil
			}
			continue // an earlier host name (of the snapshot this guest was restored from)
		}
		content.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			content.WriteString("\n")
		}
	}
	if len(old) == 0 {
		content.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	content.WriteString("127.0.1.1\t" + hostname + "\n")
	return os.WriteFile(path, []byte(content.String()), 0o644)
}
