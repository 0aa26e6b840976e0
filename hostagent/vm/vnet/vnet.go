// Package vnet runs one VM's user-space network: a gvisor-tap-vsock stack that QEMU's
// `-netdev stream` socket plugs into, through a frame filter that lets the host reach the
// guest's SSH server and refuses every connection the guest starts (no egress).
package vnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"syscall"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
)

// Addresses of every VM's private network. Each VM has its own stack, so they never clash.
const (
	Subnet     = "192.168.127.0/24"
	GatewayIP  = "192.168.127.1"
	GuestIP    = "192.168.127.2"
	GatewayMAC = "5a:94:ef:e4:0c:ee"
	GuestMAC   = "5a:94:ef:e4:0c:dd"
	SSHPort    = 22
	mtu        = 1500
)

// Network is one VM's virtual network.
type Network struct {
	vn     *virtualnetwork.VirtualNetwork
	logger *slog.Logger
}

// New creates the stack. It has no port forwards and no NAT; the filter in ServeQEMU keeps the
// guest from using the stack's outbound forwarders.
func New(logger *slog.Logger) (*Network, error) {
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
	return &Network{vn: vn, logger: logger}, nil
}

// ServeQEMU carries frames between QEMU's stream socket and the stack until either side
// closes or ctx ends. Frames from the guest pass only if AllowFromGuest says so.
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
	go func() {
		// Stack to guest: unfiltered.
		_, _ = io.Copy(qemu, relaySide)
		cancel()
	}()
	go func() {
		err := n.relayFromGuest(relaySide, qemu)
		// QEMU going away (EOF, or a reset when it is killed) is the normal end.
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && ctx.Err() == nil {
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

// relayFromGuest copies length-prefixed frames from the guest to the stack, dropping those
// the filter refuses.
func (n *Network) relayFromGuest(dst io.Writer, src io.Reader) error {
	var size [4]byte
	buf := make([]byte, 65536+4)
	dropped := 0
	for {
		if _, err := io.ReadFull(src, size[:]); err != nil {
			return err
		}
		l := binary.BigEndian.Uint32(size[:])
		if l > 65536 {
			return fmt.Errorf("frame of %d bytes", l)
		}
		frame := buf[4 : 4+l]
		if _, err := io.ReadFull(src, frame); err != nil {
			return err
		}
		if !AllowFromGuest(frame) {
			dropped++
			if dropped&(dropped-1) == 0 { // log 1, 2, 4, 8, ... drops
				n.logger.Info("dropped guest frame", "total", dropped, "len", l)
			}
			continue
		}
		copy(buf[:4], size[:])
		if _, err := dst.Write(buf[:4+l]); err != nil {
			return err
		}
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
