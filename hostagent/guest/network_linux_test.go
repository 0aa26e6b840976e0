// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNetlink configures lo in a fresh network namespace, as configureNetwork does eth0.
func TestNetlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The namespace belongs to this thread, which dies with the goroutine (never unlocked).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Error(err)
			return
		}
		nl, err := dialNetlink()
		if err != nil {
			t.Error(err)
			return
		}
		defer nl.close()
		prefix := netip.MustParsePrefix("10.77.0.2/24")
		for _, step := range []func() error{
			func() error { return nl.linkUp(lo.Index) },
			func() error { return nl.addAddr(lo.Index, prefix) },
			func() error { return nl.addAddr(lo.Index, prefix) }, // replacing is not an error
			func() error { return nl.addDefaultRoute(lo.Index, netip.MustParseAddr("10.77.0.1")) },
		} {
			if err := step(); err != nil {
				t.Errorf("netlink: %v", err)
				return
			}
		}
		if err := nl.addAddr(999999, prefix); err == nil {
			t.Error("address on a missing interface accepted")
		}
		lo, err = net.InterfaceByName("lo")
		if err != nil || lo.Flags&net.FlagUp == 0 {
			t.Errorf("lo not up: %v %v", lo, err)
		}
		addrs, err := lo.Addrs()
		found := false
		for _, a := range addrs {
			found = found || a.String() == prefix.String()
		}
		if err != nil || !found {
			t.Errorf("lo addresses %v %v, want %s", addrs, err, prefix)
		}
		routes, err := os.ReadFile("/proc/thread-self/net/route") // this thread's namespace
		if err != nil {
			t.Error(err)
			return
		}
		// Destination 00000000 via gateway 10.77.0.1 (little-endian hex 01004D0A).
		if !containsRoute(string(routes), "00000000", "01004D0A") {
			t.Errorf("no default route via 10.77.0.1:\n%s", routes)
		}
	}()
	<-done
}

func containsRoute(table, dst, gw string) bool {
	for line := range strings.Lines(table) {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == dst && f[2] == gw {
			return true
		}
	}
	return false
}
