package vnet

import (
	"bytes"
	"encoding/binary"
	"net"
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	protoTCP      = 6
	tcpFlagSYN    = 0x02
	tcpFlagACK    = 0x10
)

// AllowFromGuest reports whether an Ethernet frame sent by the guest may enter the stack. Only
// ARP and the guest SSH server's side of connections the host opened pass: TCP from
// GuestIP:22 to GatewayIP that is not a fresh SYN. Everything else the guest sends (its own
// connections, UDP and DNS, ICMP, IPv6, fragments) is dropped, so it reaches nothing.
func AllowFromGuest(frame []byte) bool {
	if len(frame) < 14 {
		return false
	}
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherTypeARP:
		return true
	case etherTypeIPv4:
	default:
		return false
	}
	ip := frame[14:]
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return false
	}
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl+20 {
		return false
	}
	// Fragments (more-fragments flag or an offset) carry no complete TCP header to judge.
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return false
	}
	if ip[9] != protoTCP ||
		!bytes.Equal(ip[12:16], net.ParseIP(GuestIP).To4()) ||
		!bytes.Equal(ip[16:20], net.ParseIP(GatewayIP).To4()) {
		return false
	}
	tcp := ip[ihl:]
	if binary.BigEndian.Uint16(tcp[0:2]) != SSHPort {
		return false
	}
	flags := tcp[13]
	return flags&tcpFlagSYN == 0 || flags&tcpFlagACK != 0
}
