// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package uids

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestParseRange(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Range
		wantErr string
	}{
		{"200000-265535", DefaultRange(), ""},
		{"1000-1000", Range{1000, 1000}, ""},
		{" 5000 - 5009 ", Range{5000, 5009}, ""},
		{"off", Range{}, ""},
		{"", Range{}, "want FIRST-LAST"},
		{"200000", Range{}, "want FIRST-LAST"},
		{"a-b", Range{}, "want FIRST-LAST"},
		{"0-100", Range{}, "1000 <= FIRST"},
		{"999-2000", Range{}, "1000 <= FIRST"},
		{"3000-2000", Range{}, "FIRST <= LAST"},
		{"1000-4294967295", Range{}, "LAST <"},
		{"-5-10", Range{}, "want FIRST-LAST"},
	} {
		got, err := ParseRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRange(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if got, _ := ParseRange(DefaultRange().String()); got != DefaultRange() || (Range{}).String() != "off" || DefaultRange().Size() != 65536 {
		t.Error("String does not round-trip")
	}
}

// FuzzParseRange checks that an accepted range holds no uid below MinUID, is ordered and
// prints back as itself.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"200000-265535", "off", "0-1", "1000-999", "1-2-3", "4294967295-4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil || r.IsZero() {
			return
		}
		if r.First < MinUID || r.Last < r.First || r.Last >= 1<<31-1 {
			t.Fatalf("ParseRange(%q) = %v", s, r)
		}
		if again, err := ParseRange(r.String()); err != nil || again != r {
			t.Fatalf("ParseRange(%q) = %v, %v", r.String(), again, err)
		}
	})
}

// owners is a set of live owners for an allocator's alive func.
type owners struct {
	mu sync.Mutex
	m  map[string]bool
}

func (o *owners) alive(name string) bool { o.mu.Lock(); defer o.mu.Unlock(); return o.m[name] }
func (o *owners) set(name string, on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[name] = on
}

// TestClaimsCollisionFree: concurrent claims through several allocators over one directory
// (as several agents' restarts would have) never hand out a uid twice; the range running out
// is a clear error; a claim is stable for its owner and survives a new allocator; a released
// or stale one is handed out again.
func TestClaimsCollisionFree(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "uids")
	live := &owners{m: map[string]bool{}}
	r := Range{First: 300000, Last: 300015}
	allocs := make([]*Allocator, 4)
	for i := range allocs {
		var err error
		if allocs[i], err = New(dir, r, live.alive); err != nil {
			t.Fatal(err)
		}
	}
	got := make(map[string]uint32)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range r.Size() {
		owner := fmt.Sprintf("vm-%02d", i)
		live.set(owner, true)
		wg.Go(func() {
			uid, err := allocs[i%len(allocs)].Claim(ctx, owner)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[owner] = uid
			mu.Unlock()
		})
	}
	wg.Wait()
	seen := map[uint32]string{}
	for owner, uid := range got {
		if uid < r.First || uid > r.Last {
			t.Errorf("%s got %d, outside %s", owner, uid, r)
		}
		if other, dup := seen[uid]; dup {
			t.Errorf("uid %d given to %s and %s", uid, owner, other)
		}
		seen[uid] = owner
	}
	if len(seen) != r.Size() {
		t.Fatalf("%d distinct uids for %d owners", len(seen), r.Size())
	}

	live.set("vm-late", true)
	if _, err := allocs[0].Claim(ctx, "vm-late"); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "300000-300015") {
		t.Fatalf("claim on a full range: %v", err)
	}
	// A new allocator (an agent restarted) sees the claims and gives an owner its own uid back.
	again, err := New(dir, r, live.alive)
	if err != nil {
		t.Fatal(err)
	}
	if uid, err := again.Claim(ctx, "vm-03"); err != nil || uid != got["vm-03"] {
		t.Fatalf("claim again for vm-03: %d, %v; want %d", uid, err, got["vm-03"])
	}
	// Released: the uid is free again.
	if err := again.Release(ctx, "vm-03"); err != nil {
		t.Fatal(err)
	}
	if err := again.Release(ctx, "vm-03"); err != nil {
		t.Fatalf("release twice: %v", err)
	}
	if uid, err := again.Claim(ctx, "vm-late"); err != nil || uid != got["vm-03"] {
		t.Fatalf("claim after a release: %d, %v; want %d", uid, err, got["vm-03"])
	}
	// Stale: an owner that is gone (its VM directory removed after a crash) loses its claim.
	live.set("vm-07", false)
	live.set("vm-new", true)
	if uid, err := again.Claim(ctx, "vm-new"); err != nil || uid != got["vm-07"] {
		t.Fatalf("claim over a stale one: %d, %v; want %d", uid, err, got["vm-07"])
	}
	data, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(got["vm-07"])))
	if err != nil || string(data) != "vm-new" {
		t.Fatalf("claim file: %q, %v", data, err)
	}
	for _, bad := range []string{"", "a/b", "x\n"} {
		if _, err := again.Claim(ctx, bad); err == nil {
			t.Errorf("claim for %q accepted", bad)
		}
	}
}

// BenchmarkClaimRelease measures what Launch and Stop add for a VM's uid: a claim and its
// release, with 32 other VMs holding claims.
func BenchmarkClaimRelease(b *testing.B) {
	ctx := context.Background()
	a, err := New(filepath.Join(b.TempDir(), "uids"), DefaultRange(), func(string) bool { return true })
	if err != nil {
		b.Fatal(err)
	}
	for i := range 32 {
		if _, err := a.Claim(ctx, fmt.Sprintf("held-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := a.Claim(ctx, "vm"); err != nil {
			b.Fatal(err)
		}
		if err := a.Release(ctx, "vm"); err != nil {
			b.Fatal(err)
		}
	}
}
