// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"encoding/binary"
	"net/netip"
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	protoTCP      = 6
	protoUDP      = 17
	tcpFlagSYN    = 0x02
	tcpFlagRST    = 0x04
	tcpFlagACK    = 0x10
	dnsPort       = 53
)

var (
	gatewayAddr = netip.MustParseAddr(GatewayIP)
	guestAddr   = netip.MustParseAddr(GuestIP)
)

// Verdict is what the relay does with a frame the guest sent.
type Verdict int

const (
	// Drop discards the frame.
	Drop Verdict = iota
	// Pass hands the frame to the stack.
	Pass
	// Reset refuses a connection the policy does not allow: the relay answers the guest's SYN
	// with a RST, so the guest fails at once instead of waiting for a timeout.
	Reset
	// Resolve is a DNS query to the gateway: the relay answers it itself.
	Resolve
)

// AllowFunc says whether the guest may open a TCP connection to dst:port.
type AllowFunc func(dst netip.Addr, port uint16) bool

// packet is the part of a guest's IPv4 frame the filter reads.
type packet struct {
	proto        byte
	src, dst     netip.Addr
	sport, dport uint16
	flags        byte   // TCP flags
	ip           []byte // the IPv4 packet, trimmed to its total length
	ihl          int    // IPv4 header length
}

// parsePacket reads an Ethernet frame carrying an unfragmented IPv4 TCP or UDP packet with
// complete headers.
func parsePacket(frame []byte) (packet, bool) {
	if len(frame) < 14 || binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv4 {
		return packet{}, false
	}
	ip := frame[14:]
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return packet{}, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total < 20 || total > len(ip) {
		return packet{}, false
	}
	ip = ip[:total] // without the Ethernet padding
	// Fragments (more-fragments flag or an offset) carry no complete header to judge.
	if ihl < 20 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return packet{}, false
	}
	p := packet{proto: ip[9], ip: ip, ihl: ihl,
		src: netip.AddrFrom4([4]byte(ip[12:16])), dst: netip.AddrFrom4([4]byte(ip[16:20]))}
	switch {
	case p.proto == protoTCP && len(ip) >= ihl+20:
		p.flags = ip[ihl+13]
	case p.proto == protoUDP && len(ip) >= ihl+8:
	default:
		return packet{}, false
	}
	p.sport = binary.BigEndian.Uint16(ip[ihl : ihl+2])
	p.dport = binary.BigEndian.Uint16(ip[ihl+2 : ihl+4])
	return p, true
}

// Classify judges an Ethernet frame the guest sent. Always: ARP passes, and so does the guest
// SSH server's side of connections the host opened (TCP from GuestIP:22 to GatewayIP that is
// not a fresh SYN). With allow nil the guest has no egress and everything else is dropped
// (its own connections, UDP and DNS, ICMP, IPv6, fragments), so it reaches nothing. With
// allow set, TCP to the gateway passes if allow says so (the package proxy's port, which the
// stack serves itself) and a fresh SYN to any other gateway port is Reset; a SYN to another
// address passes if allow says so and is Reset otherwise; the rest of a TCP connection passes
// when its destination is outside the refused ranges on an EgressPort (the stack only opens
// connections on a SYN it was given, so these packets reach nothing else); and a UDP query to
// the gateway's DNS port is answered by the relay (Resolve).
func Classify(frame []byte, allow AllowFunc) Verdict {
	if len(frame) >= 14 && binary.BigEndian.Uint16(frame[12:14]) == etherTypeARP {
		return Pass
	}
	p, ok := parsePacket(frame)
	if !ok || p.src != guestAddr {
		return Drop
	}
	syn := p.flags&tcpFlagSYN != 0 && p.flags&tcpFlagACK == 0
	switch {
	case p.proto == protoTCP && p.dst == gatewayAddr:
		switch {
		case p.sport == SSHPort && !syn:
			return Pass
		case allow != nil && allow(p.dst, p.dport):
			return Pass
		case syn && allow != nil:
			return Reset // nothing else listens on the gateway for the guest
		}
	case allow == nil:
	case p.proto == protoUDP && p.dst == gatewayAddr && p.dport == dnsPort:
		return Resolve
	case p.proto == protoTCP && syn:
		if allow(p.dst, p.dport) && !Refused(p.dst) && EgressPort(p.dport) {
			return Pass
		}
		return Reset
	case p.proto == protoTCP:
		if !Refused(p.dst) && EgressPort(p.dport) {
			return Pass
		}
	}
	return Drop
}
