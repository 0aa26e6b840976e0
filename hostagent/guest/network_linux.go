// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// configureNetwork brings up lo and the interface with the static address and default route of
// wire.BootParams (there is no DHCP) and writes /etc/resolv.conf.
func (b *boot) configureNetwork() error {
	var ifc *net.Interface
	err := waitFor(b.cfg.DeviceTimeout, func() bool {
		var err error
		ifc, err = net.InterfaceByName(b.cfg.Interface)
		return err == nil
	}, "interface "+b.cfg.Interface+" did not appear")
	if err != nil {
		return err
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	nl, err := dialNetlink()
	if err != nil {
		return err
	}
	defer nl.close()
	steps := []struct {
		what string
		run  func() error
	}{
		{"lo up", func() error { return nl.linkUp(lo.Index) }},
		{"address " + b.params.Address.String(), func() error { return nl.addAddr(ifc.Index, b.params.Address) }},
		{b.cfg.Interface + " up", func() error { return nl.linkUp(ifc.Index) }},
		{"default route via " + b.params.Gateway.String(), func() error { return nl.addDefaultRoute(ifc.Index, b.params.Gateway) }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	// resolv.conf may be a dangling symlink to a resolver this guest does not run.
	if err := os.Remove("/etc/resolv.conf"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile("/etc/resolv.conf", []byte("nameserver "+b.params.DNS.String()+"\n"), 0o644)
}

// netlink is a NETLINK_ROUTE socket that sends one request at a time and waits for its ack.
type netlink struct {
	fd  int
	seq uint32
}

func dialNetlink() (*netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlink{fd: fd}, nil
}

func (n *netlink) close() { unix.Close(n.fd) }

func (n *netlink) linkUp(index int) error {
	// struct ifinfomsg: family, pad, type u16, index i32, flags u32, change u32.
	msg := make([]byte, unix.SizeofIfInfomsg)
	msg[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(msg[4:], uint32(index))
	binary.NativeEndian.PutUint32(msg[8:], unix.IFF_UP)
	binary.NativeEndian.PutUint32(msg[12:], unix.IFF_UP)
	return n.request(unix.RTM_NEWLINK, 0, msg)
}

func (n *netlink) addAddr(index int, p netip.Prefix) error {
	// struct ifaddrmsg: family, prefixlen, flags, scope, index u32.
	msg := make([]byte, unix.SizeofIfAddrmsg)
	msg[0] = unix.AF_INET
	msg[1] = byte(p.Bits())
	binary.NativeEndian.PutUint32(msg[4:], uint32(index))
	a := p.Addr().As4()
	msg = appendAttr(msg, unix.IFA_LOCAL, a[:])
	msg = appendAttr(msg, unix.IFA_ADDRESS, a[:])
	return n.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, msg)
}

func (n *netlink) addDefaultRoute(index int, gw netip.Addr) error {
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags u32.
	msg := make([]byte, unix.SizeofRtMsg)
	msg[0] = unix.AF_INET
	msg[4] = unix.RT_TABLE_MAIN
	msg[5] = unix.RTPROT_BOOT
	msg[6] = unix.RT_SCOPE_UNIVERSE
	msg[7] = unix.RTN_UNICAST
	g := gw.As4()
	msg = appendAttr(msg, unix.RTA_GATEWAY, g[:])
	oif := binary.NativeEndian.AppendUint32(nil, uint32(index))
	msg = appendAttr(msg, unix.RTA_OIF, oif)
	return n.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, msg)
}

// appendAttr appends a route attribute (struct rtattr: len u16, type u16, data, padded to 4).
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends one message and waits for the kernel's acknowledgement.
func (n *netlink) request(typ, flags uint16, body []byte) error {
	n.seq++
	msg := make([]byte, 0, unix.SizeofNlMsghdr+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.SizeofNlMsghdr+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	msg = binary.NativeEndian.AppendUint32(msg, n.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(n.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		nr, _, err := unix.Recvfrom(n.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			return fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != n.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("netlink: short error message")
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}
