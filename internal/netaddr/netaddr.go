// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package netaddr says which IP addresses are public: not this host's, not a private network's,
// not link-local (cloud metadata) nor special-purpose. Guests reach only public addresses, and
// so do the package proxy's fetches of the files index pages link to.
package netaddr

import "net/netip"

// nonPublic are the ranges that are not public (IPv4-mapped IPv6 addresses are judged as IPv4).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT; Alibaba's metadata service
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"), // link-local: cloud metadata services
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// NonPublic returns the ranges of addresses that are not public.
func NonPublic() []netip.Prefix { return append([]netip.Prefix(nil), nonPublic...) }

// Public reports whether addr is a valid address outside every NonPublic range.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.Zone() != "" {
		return false
	}
	for _, n := range nonPublic {
		if n.Contains(addr) {
			return false
		}
	}
	return true
}
