// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is a host resolver with fixed answers that counts its lookups.
type fakeDNS struct {
	answers map[string][]string
	err     error
	lookups int
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.lookups++
	if f.err != nil {
		return nil, f.err
	}
	var out []netip.Addr
	for _, a := range f.answers[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func query(t *testing.T, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// parseAnswer returns the reply's code and A records.
func parseAnswer(t *testing.T, msg []byte) (dnsmessage.RCode, []string) {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(msg); err != nil {
		t.Fatal(err)
	}
	if !m.Response || m.ID != 7 || len(m.Questions) != 1 {
		t.Fatalf("bad reply header %+v", m.Header)
	}
	var addrs []string
	for _, rr := range m.Answers {
		if a, ok := rr.Body.(*dnsmessage.AResource); ok {
			addrs = append(addrs, netip.AddrFrom4(a.A).String())
		}
	}
	return m.RCode, addrs
}

func TestEgressAnswer(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]string{
		"registry.npmjs.org": {"104.16.1.34", "104.16.1.34", "127.0.0.1", "10.0.0.3", "104.16.2.34"},
		"evil.example":       {"203.0.113.66"},
		"inside.example.org": {"192.168.1.1"},
	}}
	clock := time.Unix(1e9, 0)
	e := newEgress(Policy{Proxy: true, Hosts: []string{"registry.npmjs.org", "inside.example.org"}}, dns.lookup)
	e.now = func() time.Time { return clock }
	ctx := context.Background()
	ask := func(name string, typ dnsmessage.Type) (dnsmessage.RCode, []string) {
		msg, err := e.answer(ctx, query(t, name, typ))
		if err != nil {
			t.Fatal(err)
		}
		return parseAnswer(t, msg)
	}
	npm := netip.MustParseAddr("104.16.1.34")
	if e.allow(npm, 443) {
		t.Fatal("address allowed before the guest resolved its name")
	}
	tests := []struct {
		name  string
		typ   dnsmessage.Type
		code  dnsmessage.RCode
		addrs []string
	}{
		{"registry.npmjs.org.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"104.16.1.34", "104.16.2.34"}},
		{"REGISTRY.npmjs.org.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"104.16.1.34", "104.16.2.34"}},
		{"registry.npmjs.org.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil},
		{"registry.npmjs.org.", dnsmessage.TypeTXT, dnsmessage.RCodeSuccess, nil},
		{"inside.example.org.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, nil},
		{"evil.example.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"evil.example.", dnsmessage.TypeTXT, dnsmessage.RCodeNameError, nil},
		{"x.registry.npmjs.org.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"packages.waggle.internal.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{GatewayIP}},
		{"Packages.Waggle.Internal.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{GatewayIP}},
		{"packages.waggle.internal.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil},
		{"x.packages.waggle.internal.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
	}
	for _, tt := range tests {
		code, addrs := ask(tt.name, tt.typ)
		if code != tt.code || !slices.Equal(addrs, tt.addrs) {
			t.Errorf("%s %v: got %v %v, want %v %v", tt.name, tt.typ, code, addrs, tt.code, tt.addrs)
		}
	}
	if dns.lookups != 2 {
		t.Errorf("%d host lookups, want 2 (one per allowed name, then the cache)", dns.lookups)
	}
	for _, c := range []struct {
		addr string
		port uint16
		want bool
	}{
		{"104.16.1.34", 443, true}, {"104.16.2.34", 80, true}, {"104.16.1.34", 22, false},
		{"127.0.0.1", 443, false}, {"10.0.0.3", 443, false}, {"203.0.113.66", 443, false}, {"192.168.1.1", 443, false},
		{GatewayIP, 80, true}, {GatewayIP, 443, false}, {GatewayIP, 53, false}, {GatewayIP, 22, false},
	} {
		if got := e.allow(netip.MustParseAddr(c.addr), c.port); got != c.want {
			t.Errorf("allow %s:%d = %v", c.addr, c.port, got)
		}
	}
	// The host resolver failing: the last answer stands.
	clock = clock.Add(2 * nameTTL)
	dns.err = errors.New("resolver down")
	if code, addrs := ask("registry.npmjs.org.", dnsmessage.TypeA); code != dnsmessage.RCodeSuccess || len(addrs) != 2 {
		t.Errorf("stale answer: %v %v", code, addrs)
	}
	// A name never resolved gives SERVFAIL.
	e.policy.Hosts = append(e.policy.Hosts, "pypi.org")
	if code, _ := ask("pypi.org.", dnsmessage.TypeA); code != dnsmessage.RCodeServerFailure {
		t.Errorf("failed lookup: %v", code)
	}
	// Addresses expire once their name has not resolved to them for addrGrace.
	clock = clock.Add(addrGrace)
	if e.allow(npm, 443) {
		t.Error("address still allowed after its grace period")
	}
	// Without the proxy in the policy its name does not resolve, and its port is closed.
	e.policy.Proxy = false
	if code, _ := ask("packages.waggle.internal.", dnsmessage.TypeA); code != dnsmessage.RCodeNameError {
		t.Errorf("proxy name without the proxy: %v", code)
	}
	if e.allow(gatewayAddr, 80) {
		t.Error("proxy port allowed without the proxy")
	}
	// Networks of the policy need no resolution.
	e.policy.Nets = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	if !e.allow(netip.MustParseAddr("198.51.100.9"), 443) {
		t.Error("network not allowed")
	}
	if _, err := e.answer(ctx, []byte{1, 2, 3}); err == nil {
		t.Error("garbage answered")
	}
}

func FuzzEgressAnswer(f *testing.F) {
	f.Add([]byte{0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'f', 'o', 'o', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, q []byte) {
		dns := &fakeDNS{answers: map[string][]string{"foo.com": {"203.0.113.1"}}}
		e := newEgress(Policy{Hosts: []string{"foo.com"}}, dns.lookup)
		msg, err := e.answer(context.Background(), q)
		if err != nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(msg); err != nil || len(msg) > 512 {
			t.Fatalf("bad reply (%d bytes): %v", len(msg), err)
		}
	})
}

// TestRelay runs the relay between a fake QEMU socket and a real stack: the guest's DNS query
// is answered by the relay, a refused SYN gets a RST, and a dropped frame gets nothing.
func TestRelay(t *testing.T) {
	n, err := New(slog.New(slog.DiscardHandler), Policy{Proxy: true, Hosts: []string{"registry.npmjs.org"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.PackageListener() == nil {
		t.Fatal("no package proxy listener with the proxy in the policy")
	}
	t.Cleanup(func() { n.PackageListener().Close() })
	if none, err := New(slog.New(slog.DiscardHandler), Policy{}); err != nil || none.PackageListener() != nil {
		t.Fatalf("no egress: listener %v, %v", none.PackageListener(), err)
	}
	dns := &fakeDNS{answers: map[string][]string{"registry.npmjs.org": {"203.0.113.5"}}}
	n.egress.lookup = dns.lookup
	qemu, guest := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.ServeQEMU(ctx, qemu) }()
	t.Cleanup(func() {
		cancel()
		guest.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeQEMU: %v", err)
		}
	})
	send := func(frame []byte) {
		t.Helper()
		if _, err := guest.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame)))); err != nil {
			t.Fatal(err)
		}
		if _, err := guest.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	// recv returns the next IPv4 frame to the guest (the stack may send others, e.g. ARP).
	recv := func() packet {
		t.Helper()
		if err := guest.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			var size [4]byte
			if _, err := io.ReadFull(guest, size[:]); err != nil {
				t.Fatal(err)
			}
			f := make([]byte, binary.BigEndian.Uint32(size[:]))
			if _, err := io.ReadFull(guest, f); err != nil {
				t.Fatal(err)
			}
			if p, ok := parsePacket(f); ok {
				return p
			}
		}
	}
	send(frame(GuestIP, "203.0.113.5", 40000, 443, tcpFlagSYN)) // not resolved yet: refused
	if p := recv(); p.proto != protoTCP || p.flags&tcpFlagRST == 0 || p.src.String() != "203.0.113.5" {
		t.Fatalf("want a RST from 203.0.113.5, got %+v", p)
	}
	send(frame(GuestIP, "198.51.100.1", 40000, 22, tcpFlagACK)) // dropped silently
	send(udpFrame(GuestIP, GatewayIP, 40001, 53, query(t, "registry.npmjs.org.", dnsmessage.TypeA)))
	p := recv()
	if p.proto != protoUDP || p.sport != 53 || p.dport != 40001 || p.src != gatewayAddr {
		t.Fatalf("want a DNS reply, got %+v", p)
	}
	verifyChecksums(t, p)
	if code, addrs := parseAnswer(t, p.ip[p.ihl+8:]); code != dnsmessage.RCodeSuccess || !slices.Equal(addrs, []string{"203.0.113.5"}) {
		t.Fatalf("answer %v %v", code, addrs)
	}
	if !n.egress.allow(netip.MustParseAddr("203.0.113.5"), 443) {
		t.Error("resolved address not allowed")
	}
}
