// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/waggle-dev/waggle/internal/netaddr"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in    string
		proxy bool
		hosts []string
		nets  []string
		err   bool
	}{
		{in: "none"},
		{in: "packages", proxy: true},
		{in: "allow:example.org", proxy: true, hosts: []string{"example.org"}},
		{in: "allow:Example.ORG., example.org,203.0.113.0/24,198.51.100.7", proxy: true, hosts: []string{"example.org"},
			nets: []string{"203.0.113.0/24", "198.51.100.7/32"}},
		{in: "allow:203.0.113.9/24", proxy: true, nets: []string{"203.0.113.0/24"}},
		{in: "", err: true},
		{in: "all", err: true},
		{in: "allow:", err: true},
		{in: "allow:,", err: true},
		{in: "allow:localhost", err: true},
		{in: "allow:10.1.2.3", err: true},
		{in: "allow:0.0.0.0/0", err: true},
		{in: "allow:169.254.169.254", err: true},
		{in: "allow:100.64.0.1", err: true},
		{in: "allow:172.20.0.0/16", err: true},
		{in: "allow:192.168.0.0/15", err: true},
		{in: "allow:127.0.0.1/32", err: true},
		{in: "allow:2001:db8::/32", err: true},
		{in: "allow:::1", err: true},
		{in: "allow:1.2.3", err: true},
		{in: "allow:1.2.3.4/33", err: true},
		{in: "allow:foo_bar.com", err: true},
		{in: "allow:-a.com", err: true},
		{in: "allow:a.123", err: true},
		{in: "allow:*.example.org", err: true},
		{in: "allow:example.org:443", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePolicy(tt.in)
			if tt.err {
				if !errors.Is(err, ErrBadPolicy) {
					t.Fatalf("got %+v, %v; want ErrBadPolicy", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var nets []string
			for _, n := range p.Nets {
				nets = append(nets, n.String())
			}
			if p.Proxy != tt.proxy || !slices.Equal(p.Hosts, tt.hosts) || !slices.Equal(nets, tt.nets) {
				t.Errorf("got proxy %v hosts %v nets %v, want %v %v %v", p.Proxy, p.Hosts, nets, tt.proxy, tt.hosts, tt.nets)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "10.9.9.9", "172.31.0.1", "192.168.127.1", "169.254.169.254",
		"100.100.100.200", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fd00::1", "fe80::1", "2001:db8::1"} {
		if !Refused(netip.MustParseAddr(a)) {
			t.Errorf("%s not refused", a)
		}
	}
	for _, a := range []string{"104.16.0.1", "151.101.0.223", "172.32.0.1", "::ffff:151.101.0.223"} {
		if Refused(netip.MustParseAddr(a)) {
			t.Errorf("%s refused", a)
		}
	}
	if !Refused(netip.Addr{}) {
		t.Error("the zero address is not refused")
	}
}

// FuzzParsePolicy checks that a parsed policy never names a refused network or a bad host,
// and that it reads back the same from its String.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"none", "packages", "allow:example.org,203.0.113.0/24", "allow:10.0.0.0/8", "allow:a.b,,c.d."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		for _, n := range p.Nets {
			if !n.Addr().Is4() || Refused(n.Addr()) {
				t.Fatalf("%q: allowed network %v", s, n)
			}
			for _, r := range netaddr.NonPublic() {
				if r.Overlaps(n) {
					t.Fatalf("%q: network %v overlaps %v", s, n, r)
				}
			}
		}
		for _, h := range p.Hosts {
			if !validHostname(h) {
				t.Fatalf("%q: host %q", s, h)
			}
		}
		again, err := ParsePolicy(p.String())
		if err != nil || again.Proxy != p.Proxy || !slices.Equal(again.Hosts, p.Hosts) || !slices.Equal(again.Nets, p.Nets) {
			t.Fatalf("%q: String %q reads back as %+v, %v", s, p.String(), again, err)
		}
	})
}
