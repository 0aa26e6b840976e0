// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// identify serves the host's wire.IdentityRequest after a restore from a snapshot: every clone
// of a snapshot starts with the same RNG state, clock, host name and keys, and leaves with its
// own. The steps run in order (the host key is made from the reseeded RNG); a failing step
// fails the request and names itself.
func (b *boot) identify(id wire.Identity) (ssh.Signer, error) {
	var signer ssh.Signer
	steps := []struct {
		name string
		run  func() error
	}{
		{"entropy", func() error { return reseed(id.Entropy) }},
		{"clock", func() error { return setClock(id.UnixNano) }},
		{"hostname", func() error { return b.rename(id.Hostname) }},
		{"host key", func() (err error) { signer, err = makeHostKey(); return err }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return nil, fmt.Errorf("identity: %s: %w", s.name, err)
		}
	}
	b.log.Info("identity changed", "hostname", id.Hostname, "clock", time.Unix(0, id.UnixNano).UTC())
	return signer, nil
}

// reseed credits entropy to the kernel's input pool (RNDADDENTROPY: mixed in and counted, not
// merely written) and makes the CRNG reseed from it at once (RNDRESEEDCRNG), so that what
// /dev/urandom and getrandom return from now on differs between clones.
func reseed(entropy []byte) error {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8, 8+len(entropy)+3)
	binary.NativeEndian.PutUint32(info[0:], uint32(len(entropy)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	info = append(info, entropy...)
	for len(info)%4 != 0 {
		info = append(info, 0)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.RNDRESEEDCRNG, 0); err != nil {
		return fmt.Errorf("RNDRESEEDCRNG: %w", err)
	}
	return nil
}

// setClock sets the wall clock to the host's.
func setClock(unixNano int64) error {
	ts := unix.NsecToTimespec(unixNano)
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// rename sets the host name and its /etc/hosts line.
func (b *boot) rename(hostname string) error {
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return err
	}
	b.params.Hostname = hostname
	return writeHosts("/etc/hosts", hostname)
}
