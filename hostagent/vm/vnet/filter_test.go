// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// frame builds an Ethernet+IPv4+TCP frame.
func frame(src, dst string, sport, dport uint16, flags byte) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv4)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[9] = protoTCP
	copy(ip[12:], net.ParseIP(src).To4())
	copy(ip[16:], net.ParseIP(dst).To4())
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12] = 5 << 4
	tcp[13] = flags
	return f
}

// udpFrame builds an Ethernet+IPv4+UDP frame with payload.
func udpFrame(src, dst string, sport, dport uint16, payload []byte) []byte {
	f := frame(src, dst, sport, dport, 0)[:14+20+8]
	f[14+9] = protoUDP
	binary.BigEndian.PutUint16(f[14+2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(f[14+20+4:], uint16(8+len(payload)))
	return append(f, payload...)
}

func TestClassify(t *testing.T) {
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], etherTypeARP)
	ipv6 := make([]byte, 60)
	binary.BigEndian.PutUint16(ipv6[12:], 0x86dd)
	dnsQuery := udpFrame(GuestIP, GatewayIP, 40000, 53, []byte("query"))
	frag := frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK)
	frag[14+6] = 0x20 // more fragments
	// The policy allows the proxy, 203.0.113.7 and, wrongly, 10.0.0.1 (Refused must still win).
	allow := func(dst netip.Addr, port uint16) bool {
		return dst == gatewayAddr && port == 80 ||
			dst == netip.MustParseAddr("203.0.113.7") || dst == netip.MustParseAddr("10.0.0.1")
	}
	tests := []struct {
		name       string
		frame      []byte
		none, open Verdict // with no egress, and with allow
	}{
		{"arp", arp, Pass, Pass},
		{"ssh reply", frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK), Pass, Pass},
		{"ssh syn-ack", frame(GuestIP, GatewayIP, 22, 40000, tcpFlagSYN|tcpFlagACK), Pass, Pass},
		{"guest syn from port 22", frame(GuestIP, GatewayIP, 22, 443, tcpFlagSYN), Drop, Reset},
		{"guest connect to gateway", frame(GuestIP, GatewayIP, 40000, 22, tcpFlagSYN), Drop, Reset},
		{"guest connect to gateway dns over tcp", frame(GuestIP, GatewayIP, 40000, 53, tcpFlagSYN), Drop, Reset},
		{"guest connect to the package proxy", frame(GuestIP, GatewayIP, 40000, 80, tcpFlagSYN), Drop, Pass},
		{"guest ack to the package proxy", frame(GuestIP, GatewayIP, 40000, 80, tcpFlagACK), Drop, Pass},
		{"guest ack to gateway", frame(GuestIP, GatewayIP, 40000, 443, tcpFlagACK), Drop, Drop},
		{"guest connect to gateway 443", frame(GuestIP, GatewayIP, 40000, 443, tcpFlagSYN), Drop, Reset},
		{"connect to allowed address", frame(GuestIP, "203.0.113.7", 40000, 443, tcpFlagSYN), Drop, Pass},
		{"connect to allowed address port 80", frame(GuestIP, "203.0.113.7", 40000, 80, tcpFlagSYN), Drop, Pass},
		{"connect to allowed address port 22", frame(GuestIP, "203.0.113.7", 40000, 22, tcpFlagSYN), Drop, Reset},
		{"connect to other address", frame(GuestIP, "1.1.1.1", 40000, 443, tcpFlagSYN), Drop, Reset},
		{"connect to private address", frame(GuestIP, "10.0.0.1", 40000, 443, tcpFlagSYN), Drop, Reset},
		{"connect to host loopback", frame(GuestIP, "127.0.0.1", 40000, 80, tcpFlagSYN), Drop, Reset},
		{"connect to metadata", frame(GuestIP, "169.254.169.254", 40000, 80, tcpFlagSYN), Drop, Reset},
		{"syn-fin to other address", frame(GuestIP, "1.1.1.1", 40000, 443, tcpFlagSYN|0x01), Drop, Reset},
		{"established to allowed", frame(GuestIP, "203.0.113.7", 40000, 443, tcpFlagACK), Drop, Pass},
		{"ack to private address", frame(GuestIP, "10.0.0.1", 40000, 443, tcpFlagACK), Drop, Drop},
		{"ack to port 22", frame(GuestIP, "1.1.1.1", 40000, 22, tcpFlagACK), Drop, Drop},
		{"reply to other address", frame(GuestIP, "127.0.0.1", 22, 40000, tcpFlagACK), Drop, Drop},
		{"spoofed source", frame("192.168.127.9", GatewayIP, 22, 40000, tcpFlagACK), Drop, Drop},
		{"spoofed source syn", frame("192.168.127.9", "203.0.113.7", 40000, 443, tcpFlagSYN), Drop, Drop},
		{"dns to gateway", dnsQuery, Drop, Resolve},
		{"dns elsewhere", udpFrame(GuestIP, "8.8.8.8", 40000, 53, []byte("q")), Drop, Drop},
		{"udp to gateway", udpFrame(GuestIP, GatewayIP, 40000, 123, []byte("q")), Drop, Drop},
		{"fragment", frag, Drop, Drop},
		{"ipv6", ipv6, Drop, Drop},
		{"short", []byte{1, 2, 3}, Drop, Drop},
		{"truncated tcp", frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK)[:40], Drop, Drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.frame, nil); got != tt.none {
				t.Errorf("no egress: got %v, want %v", got, tt.none)
			}
			if got := Classify(tt.frame, allow); got != tt.open {
				t.Errorf("egress: got %v, want %v", got, tt.open)
			}
		})
	}
}

func TestResetFrame(t *testing.T) {
	syn := frame(GuestIP, "1.1.1.1", 40000, 443, tcpFlagSYN)
	binary.BigEndian.PutUint32(syn[14+20+4:], 1000)
	p, ok := parsePacket(syn)
	if !ok {
		t.Fatal("parse")
	}
	rst := resetFrame(syn, p)
	r, ok := parsePacket(rst)
	if !ok {
		t.Fatal("parse reply")
	}
	if r.src.String() != "1.1.1.1" || r.dst.String() != GuestIP || r.sport != 443 || r.dport != 40000 {
		t.Errorf("reply %v:%d -> %v:%d", r.src, r.sport, r.dst, r.dport)
	}
	if r.flags != tcpFlagRST|tcpFlagACK {
		t.Errorf("flags %#x", r.flags)
	}
	if ack := binary.BigEndian.Uint32(r.ip[20+8:]); ack != 1001 {
		t.Errorf("ack %d, want 1001", ack)
	}
	verifyChecksums(t, r)
}

// verifyChecksums checks the IPv4 header and transport checksums of a frame the relay made.
func verifyChecksums(t *testing.T, p packet) {
	t.Helper()
	if c := checksum(0, p.ip[:p.ihl]); c != 0 {
		t.Errorf("ip checksum off by %#x", c)
	}
	pseudo := make([]byte, 12)
	copy(pseudo, p.ip[12:20])
	pseudo[9] = p.proto
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(p.ip)-p.ihl))
	if c := checksum(sum16(0, pseudo), p.ip[p.ihl:]); c != 0 {
		t.Errorf("transport checksum off by %#x", c)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK))
	f.Add(frame(GuestIP, "203.0.113.7", 40000, 443, tcpFlagSYN))
	f.Add(udpFrame(GuestIP, GatewayIP, 40000, 53, []byte{1, 2}))
	f.Add([]byte{})
	allowAll := func(netip.Addr, uint16) bool { return true }
	f.Fuzz(func(t *testing.T, b []byte) {
		none := Classify(b, nil)
		if none != Pass && none != Drop {
			t.Fatalf("no egress gave %v", none)
		}
		v := Classify(b, allowAll)
		p, ok := parsePacket(b)
		switch v {
		case Pass:
			if ok && p.dst != gatewayAddr && (Refused(p.dst) || !EgressPort(p.dport)) {
				t.Fatalf("passed a packet to %v:%d", p.dst, p.dport)
			}
			if ok && p.proto == protoUDP {
				t.Fatal("passed UDP to the stack")
			}
		case Reset:
			if !ok || p.proto != protoTCP {
				t.Fatal("reset a non-TCP frame")
			}
			resetFrame(b, p)
		case Resolve:
			if !ok || p.proto != protoUDP || p.dst != gatewayAddr {
				t.Fatal("resolve of a frame that is no DNS query")
			}
		}
	})
}
