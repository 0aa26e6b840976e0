// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package netaddr

import (
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		public bool
	}{
		{"104.16.0.1", true}, {"151.101.0.223", true}, {"172.32.0.1", true}, {"192.0.2.2", true}, {"2a04:4e42::223", true},
		{"::ffff:151.101.0.223", true},
		{"127.0.0.1", false}, {"10.9.9.9", false}, {"172.31.0.1", false}, {"192.168.127.1", false}, {"169.254.169.254", false},
		{"100.100.100.200", false}, {"0.0.0.0", false}, {"224.0.0.1", false}, {"255.255.255.255", false},
		{"::1", false}, {"::", false}, {"fd00::1", false}, {"fe80::1", false}, {"ff02::1", false}, {"::ffff:127.0.0.1", false},
	} {
		if got := Public(netip.MustParseAddr(tt.addr)); got != tt.public {
			t.Errorf("Public(%s) = %v", tt.addr, got)
		}
	}
	if Public(netip.Addr{}) {
		t.Error("the zero address is public")
	}
	n := NonPublic()
	n[0] = netip.Prefix{}
	if NonPublic()[0] != netip.MustParsePrefix("0.0.0.0/8") {
		t.Error("NonPublic shares its slice")
	}
}
