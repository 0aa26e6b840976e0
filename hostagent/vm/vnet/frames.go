// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"encoding/binary"
	"net"
)

// replyFrame builds the Ethernet frame answering the guest's packet p (from frame): an IPv4
// packet from p's destination to its source carrying transport (a TCP or UDP header with its
// checksum field zero, and the payload), with both checksums filled in.
func replyFrame(frame []byte, p packet, transport []byte) []byte {
	out := make([]byte, 14+20+len(transport))
	copy(out[0:6], frame[6:12])              // back to the sender's MAC
	gatewayHW, _ := net.ParseMAC(GatewayMAC) // a valid constant
	copy(out[6:12], gatewayHW)
	binary.BigEndian.PutUint16(out[12:14], etherTypeIPv4)
	ip := out[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // don't fragment
	ip[8] = 64
	ip[9] = p.proto
	src, dst := p.dst.As4(), p.src.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(0, ip[:20]))
	seg := ip[20:]
	copy(seg, transport)
	// The transport checksum covers a pseudo-header: addresses, protocol and length.
	pseudo := make([]byte, 12)
	copy(pseudo[0:8], ip[12:20])
	pseudo[9] = p.proto
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(seg)))
	at := 16 // TCP
	if p.proto == protoUDP {
		at = 6
	}
	sum := checksum(sum16(0, pseudo), seg)
	if sum == 0 && p.proto == protoUDP {
		sum = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(seg[at:at+2], sum)
	return out
}

// resetFrame refuses the guest's SYN p (from frame) with a RST from its destination.
func resetFrame(frame []byte, p packet) []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:2], p.dport)
	binary.BigEndian.PutUint16(tcp[2:4], p.sport)
	th := p.ip[p.ihl:]
	seq := binary.BigEndian.Uint32(th[4:8])
	payload := len(th) - int(th[12]>>4)*4
	binary.BigEndian.PutUint32(tcp[8:12], seq+1+uint32(max(payload, 0))) // the SYN counts one
	tcp[12] = 5 << 4
	tcp[13] = tcpFlagRST | tcpFlagACK
	return replyFrame(frame, p, tcp)
}

// udpReplyFrame answers the guest's UDP packet p (from frame) with payload.
func udpReplyFrame(frame []byte, p packet, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:2], p.dport)
	binary.BigEndian.PutUint16(udp[2:4], p.sport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	copy(udp[8:], payload)
	return replyFrame(frame, p, udp)
}

// sum16 adds b to the one's complement sum acc, as 16-bit big-endian words.
func sum16(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// checksum is the Internet checksum of b, continuing the partial sum acc.
func checksum(acc uint32, b []byte) uint16 {
	acc = sum16(acc, b)
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}
