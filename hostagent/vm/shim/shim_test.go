// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

func testHostKey(t *testing.T) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		in   string
		op   string
		fail bool
	}{
		{`{"op":"status"}`, OpStatus, false},
		{`{"op":"wait"}`, OpWait, false},
		{`{"op":"stop"}`, OpStop, false},
		{`{"op":"renew"}`, OpRenew, false},
		{`{"op":"renew","lease":60000000000}`, OpRenew, false},
		{`{"op":"renew","lease":-1}`, "", true},
		{`{"op":"renew","lease":86400000000001}`, "", true},
		{`{"op":"stop","lease":60000000000}`, "", true},
		{`{"op":"snapshot","snapshot":{"dir":"/var/snap/1","keep_running":true}}`, OpSnapshot, false},
		{`{"op":"snapshot"}`, "", true},
		{`{"op":"snapshot","snapshot":{"dir":"relative"}}`, "", true},
		{`{"op":"snapshot","snapshot":{"dir":"/a/../b"}}`, "", true},
		{`{"op":"stop","snapshot":{"dir":"/a"}}`, "", true},
		{`{"op":"reboot"}`, "", true},
		{`{}`, "", true},
		{`not json`, "", true},
		{`{"op":"status"` + string(make([]byte, maxRequest)) + `}`, "", true},
	}
	for _, tt := range tests {
		r, err := DecodeRequest([]byte(tt.in))
		if tt.fail {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("%.40q: err %v, want ErrBadRequest", tt.in, err)
			}
			continue
		}
		if err != nil || r.Op != tt.op {
			t.Errorf("%q: %+v %v", tt.in, r, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"status"}`))
	f.Add([]byte(`{"op":1}`))
	f.Add([]byte(`{"op":"snapshot","snapshot":{"dir":"/x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err == nil && r.Op != OpStatus && r.Op != OpWait && r.Op != OpStop && r.Op != OpRenew && r.Op != OpSnapshot {
			t.Fatalf("accepted op %q", r.Op)
		}
		if err == nil && (r.Lease < 0 || r.Lease > MaxLease || r.Lease != 0 && r.Op != OpRenew) {
			t.Fatalf("accepted lease %s for op %q", r.Lease, r.Op)
		}
		if err == nil && r.Op == OpSnapshot && (r.Snapshot == nil || !filepath.IsAbs(r.Snapshot.Dir)) {
			t.Fatalf("accepted snapshot request %+v", r.Snapshot)
		}
	})
}

func TestConsoleMarkers(t *testing.T) {
	c, err := newConsole(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Markers split across writes, with serial CRs, among other output.
	key := wire.HostKeyLine(testHostKey(t))
	for _, chunk := range []string{"[ 1.0] boot\r\n" + key[:9], key[9:] + "\r\n", "not WAGGLE-READY\nWAGGLE-RE", "ADY\r\n"} {
		if n, err := c.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	var got []wire.ConsoleKind
	for len(c.events) > 0 {
		got = append(got, (<-c.events).Kind)
	}
	if want := []wire.ConsoleKind{wire.ConsoleHostKey, wire.ConsoleReady}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	data, _ := os.ReadFile(filepath.Join(filepath.Dir(c.file.Name()), "console.log"))
	if len(data) == 0 {
		t.Error("console.log empty")
	}
	wall, cpu := c.silentFor(3 * time.Second)
	if wall > time.Second || cpu != 0 {
		t.Errorf("silentFor right after output: %s %s", wall, cpu)
	}
	if _, cpu := c.silentFor(5 * time.Second); cpu != 2*time.Second {
		t.Errorf("cpu silence %s, want 2s", cpu)
	}
}

// TestLease: a lease runs out unless renewed in time; a renew too late is refused; no lease
// never runs out until a renew gives it a duration.
func TestLease(t *testing.T) {
	expired := func(l *lease, within time.Duration) bool {
		select {
		case <-l.expired:
			return true
		case <-time.After(within):
			return false
		}
	}
	l := newLease(100 * time.Millisecond)
	defer l.stop()
	for range 5 { // 250 ms in all, longer than the lease
		time.Sleep(50 * time.Millisecond)
		if _, err := l.renew(0); err != nil {
			t.Fatalf("renew in time: %v", err)
		}
	}
	if expired(l, 0) {
		t.Fatal("expired although renewed")
	}
	if !expired(l, 2*time.Second) {
		t.Fatal("not expired 2 s after the last renew of a 100 ms lease")
	}
	if _, err := l.renew(time.Minute); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("renew after expiry: %v, want ErrLeaseExpired", err)
	}

	none := newLease(0)
	defer none.stop()
	if _, err := none.renew(0); err == nil {
		t.Fatal("renew without a duration of a VM without lease succeeded")
	}
	if expired(none, 200*time.Millisecond) {
		t.Fatal("no lease expired")
	}
	ends, err := none.renew(50 * time.Millisecond)
	if err != nil || time.Until(ends) > 50*time.Millisecond {
		t.Fatalf("renew giving a lease: ends %s, %v", ends, err)
	}
	if !expired(none, 2*time.Second) {
		t.Fatal("the lease a renew gave did not run out")
	}
}
