// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package vnet runs one VM's user-space network: a gvisor-tap-vsock stack that QEMU's
// `-netdev stream` socket plugs into, through a frame filter that lets the host reach the
// guest's SSH server and enforces the VM's egress Policy on every connection the guest starts.
//
// Egress is enforced in the shim, where the guest cannot change it, by IP address:
//   - Package proxy: under every policy but "none", wire.PackageProxyHost resolves to the
//     gateway, and the stack itself listens on the gateway's wire.PackageProxyPort
//     (PackageListener); the shim relays each connection to the host agent's package proxy.
//     Under "packages" that is the only destination.
//   - DNS: the guest's resolver is the gateway. The relay answers those queries itself (the
//     stack's own DNS server, which would resolve any name through the host and so carry data
//     out, is never reached): the gateway for the proxy's name, A records for the policy's
//     host names, resolved on the host (IPv4 only, cached for a minute, refused ranges
//     removed), an empty answer for their other record types, NXDOMAIN for every other name.
//     DNS over TCP and to other servers is dropped.
//   - TCP: a SYN passes to the stack's forwarder (which dials from the host) only to ports
//     80/443 of an address an allowed name resolved to in the last 15 minutes, or of an
//     allowed network, and never to the refused ranges (Refused); other SYNs get a RST, so
//     tools fail at once. The rest of a connection passes when its destination is public on
//     80/443: the forwarder opens connections only on a SYN.
//   - Everything else (UDP, ICMP, IPv6, fragments) is dropped.
//
// Limits of allow lists: an allowed address may serve other sites too (a shared CDN serves
// whatever else it hosts, by SNI or Host header); a guest that learned an address keeps
// reaching it for 15 minutes after its name last resolved to it; names are matched exactly (a
// redirect to another host name needs that name allowed too); and the guest has no IPv6
// egress.
package vnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Addresses of every VM's private network, as the host-guest contract (package wire) defines
// them. Each VM has its own stack, so they never clash.
const (
	Subnet     = wire.Subnet
	GatewayIP  = wire.GatewayIP
	GuestIP    = wire.GuestIP
	GatewayMAC = wire.GatewayMAC
	SSHPort    = wire.SSHPort
	mtu        = 1500
)

// Network is one VM's virtual network.
type Network struct {
	vn       *virtualnetwork.VirtualNetwork
	egress   *egress      // nil: no egress
	packages net.Listener // the package proxy's port on the gateway; nil without one
	logger   *slog.Logger
}

// New creates the stack for a guest with the given egress policy. The stack has no port
// forwards; its outbound forwarder (which dials from this host) sees only the connections
// Classify lets through, and its own DNS server is never reached: the relay answers the
// guest's queries itself, for the package proxy's and the policy's host names only.
func New(logger *slog.Logger, policy Policy) (*Network, error) {
	vn, err := virtualnetwork.New(&types.Configuration{
		MTU:               mtu,
		Subnet:            Subnet,
		GatewayIP:         GatewayIP,
		GatewayMacAddress: GatewayMAC,
		Protocol:          types.QemuProtocol,
	})
	if err != nil {
		return nil, fmt.Errorf("vnet: %w", err)
	}
	n := &Network{vn: vn, logger: logger}
	if !policy.None() {
		n.egress = newEgress(policy, func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		})
	}
	if policy.Proxy {
		// Classify passes the guest's packets to this port to the stack, which must then
		// answer them itself: without a listener its forwarder would dial the gateway's
		// address from the host.
		n.packages, err = vn.Listen("tcp", net.JoinHostPort(GatewayIP, strconv.Itoa(wire.PackageProxyPort)))
		if err != nil {
			return nil, fmt.Errorf("vnet: package proxy port: %w", err)
		}
	}
	return n, nil
}

// PackageListener accepts the guest's connections to the package proxy (wire.PackageProxyHost),
// or is nil when the policy has no proxy. The caller relays each to the host's proxy and
// closes the listener when the VM is gone.
func (n *Network) PackageListener() net.Listener { return n.packages }

// maxDNSInFlight bounds the guest's DNS queries being answered at once; more are dropped
// (the guest's resolver retries).
const maxDNSInFlight = 8

// ServeQEMU carries frames between QEMU's stream socket and the stack until either side
// closes or ctx ends. Frames from the guest are judged by Classify.
func (n *Network) ServeQEMU(ctx context.Context, qemu net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stackSide, relaySide := net.Pipe()
	defer stackSide.Close()
	defer relaySide.Close()
	go func() {
		<-ctx.Done()
		qemu.Close()
		relaySide.Close()
	}()
	guest := &frameWriter{w: qemu}
	go func() {
		// Stack to guest: unfiltered, a whole frame at a time (the relay writes its own too).
		_ = copyFrames(relaySide, guest.write)
		cancel()
	}()
	go func() {
		err := n.relayFromGuest(ctx, relaySide, qemu, guest)
		// The relay only ends on an error. QEMU going away (EOF, or a reset when it is killed)
		// is the normal end, and so is anything after ctx ends.
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && ctx.Err() == nil {
			n.logger.Warn("guest frame relay ended", "err", err)
		}
		cancel()
	}()
	err := n.vn.AcceptQemu(ctx, stackSide)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// frameWriter writes whole length-prefixed frames to QEMU, one at a time.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (f *frameWriter) write(frame []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf = binary.BigEndian.AppendUint32(f.buf[:0], uint32(len(frame)))
	f.buf = append(f.buf, frame...)
	_, err := f.w.Write(f.buf)
	return err
}

// maxFrame bounds a frame on the stream socket.
const maxFrame = 65536

// copyFrames reads length-prefixed frames from src and hands each to put, until an error,
// which it returns: the result is never nil, and io.EOF means src ended between frames (or
// right after a frame's length). The frame passed to put is only valid during the call.
func copyFrames(src io.Reader, put func([]byte) error) error {
	var size [4]byte
	buf := make([]byte, maxFrame)
	for {
		if _, err := io.ReadFull(src, size[:]); err != nil {
			return err
		}
		l := binary.BigEndian.Uint32(size[:])
		if l > maxFrame {
			return fmt.Errorf("frame of %d bytes", l)
		}
		frame := buf[:l]
		if _, err := io.ReadFull(src, frame); err != nil {
			return err
		}
		if err := put(frame); err != nil {
			return err
		}
	}
}

// relayFromGuest copies frames from the guest to the stack as Classify says: passing,
// dropping or refusing them, or answering DNS queries itself. Like copyFrames, it runs until
// an error and returns it, never nil.
func (n *Network) relayFromGuest(ctx context.Context, stack io.Writer, src io.Reader, guest *frameWriter) error {
	toStack := &frameWriter{w: stack}
	var allow AllowFunc
	if n.egress != nil {
		allow = n.egress.allow
	}
	var dropped, refused int
	dns := make(chan struct{}, maxDNSInFlight)
	return copyFrames(src, func(frame []byte) error {
		switch Classify(frame, allow) {
		case Pass:
			return toStack.write(frame)
		case Reset:
			p, _ := parsePacket(frame)
			refused++
			if refused&(refused-1) == 0 { // log 1, 2, 4, 8, ... refusals
				n.logger.Info("refused guest connection", "dst", netip.AddrPortFrom(p.dst, p.dport), "total", refused)
			}
			return guest.write(resetFrame(frame, p))
		case Resolve:
			select {
			case dns <- struct{}{}:
				frame := slices.Clone(frame)
				go func() {
					defer func() { <-dns }()
					n.answerDNS(ctx, frame, guest)
				}()
			default:
			}
			return nil
		}
		dropped++
		if dropped&(dropped-1) == 0 { // log 1, 2, 4, 8, ... drops
			n.logger.Info("dropped guest frame", "total", dropped, "len", len(frame))
		}
		return nil
	})
}

// answerDNS answers the guest's DNS query in frame.
func (n *Network) answerDNS(ctx context.Context, frame []byte, guest *frameWriter) {
	p, _ := parsePacket(frame)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reply, err := n.egress.answer(ctx, p.ip[p.ihl+8:])
	if err != nil {
		n.logger.Debug("guest dns query not answered", "err", err)
		return
	}
	if err := guest.write(udpReplyFrame(frame, p, reply)); err != nil {
		n.logger.Debug("guest dns reply", "err", err)
	}
}

// DialGuest opens a TCP connection from the gateway to the guest's port.
func (n *Network) DialGuest(ctx context.Context, port int) (net.Conn, error) {
	c, err := n.vn.DialContextTCP(ctx, net.JoinHostPort(GuestIP, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("vnet: dial guest port %d: %w", port, err)
	}
	return c, nil
}
