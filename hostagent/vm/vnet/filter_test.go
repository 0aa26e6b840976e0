package vnet

import (
	"encoding/binary"
	"net"
	"testing"
)

// frame builds an Ethernet+IPv4+TCP frame.
func frame(src, dst string, sport, dport uint16, flags byte) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv4)
	ip := f[14:]
	ip[0] = 0x45
	ip[9] = protoTCP
	copy(ip[12:], net.ParseIP(src).To4())
	copy(ip[16:], net.ParseIP(dst).To4())
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[13] = flags
	return f
}

func TestAllowFromGuest(t *testing.T) {
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], etherTypeARP)
	ipv6 := make([]byte, 60)
	binary.BigEndian.PutUint16(ipv6[12:], 0x86dd)
	udp := frame(GuestIP, GatewayIP, 22, 53, 0)
	udp[14+9] = 17
	frag := frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK)
	frag[14+6] = 0x20 // more fragments
	tests := []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"arp", arp, true},
		{"ssh reply", frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK), true},
		{"ssh syn-ack", frame(GuestIP, GatewayIP, 22, 40000, tcpFlagSYN|tcpFlagACK), true},
		{"guest syn from port 22", frame(GuestIP, GatewayIP, 22, 80, tcpFlagSYN), false},
		{"guest connect to gateway", frame(GuestIP, GatewayIP, 40000, 22, tcpFlagSYN), false},
		{"guest connect to internet", frame(GuestIP, "1.1.1.1", 40000, 443, tcpFlagSYN), false},
		{"reply to other address", frame(GuestIP, "127.0.0.1", 22, 40000, tcpFlagACK), false},
		{"spoofed source", frame("192.168.127.9", GatewayIP, 22, 40000, tcpFlagACK), false},
		{"udp dns", udp, false},
		{"fragment", frag, false},
		{"ipv6", ipv6, false},
		{"short", []byte{1, 2, 3}, false},
		{"truncated tcp", frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK)[:40], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AllowFromGuest(tt.frame); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzAllowFromGuest(f *testing.F) {
	f.Add(frame(GuestIP, GatewayIP, 22, 40000, tcpFlagACK))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if AllowFromGuest(b) && len(b) >= 14+20+20 && b[14+9] != protoTCP && binary.BigEndian.Uint16(b[12:]) == etherTypeIPv4 {
			t.Fatal("allowed a non-TCP IPv4 frame")
		}
	})
}
