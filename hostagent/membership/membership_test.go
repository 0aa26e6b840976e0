// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package membership

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T, name string, key []byte, join ...string) *Membership {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.SecretKey, cfg.Join = name, key, join
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Meta = Meta{CPUs: 4, MemoryMiB: 4096, MaxEnvironments: 8}
	m, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func waitMembers(t *testing.T, m *Membership, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(m.Members()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d members, want %d", len(m.Members()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMembership(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name       string
		key1, key2 []byte
		joins      bool
	}{
		{"plaintext", nil, nil, true},
		{"encrypted", key, key, true},
		{"wrong key", key, []byte("fedcba9876543210fedcba9876543210"), false},
		{"no key against encrypted", key, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := start(t, "a", tt.key1)
			b := start(t, "b", tt.key2, a.Addr())
			if !tt.joins {
				time.Sleep(300 * time.Millisecond)
				if n := len(a.Members()); n != 1 {
					t.Fatalf("a sees %d members across mismatched keys", n)
				}
				return
			}
			waitMembers(t, a, 2)
			waitMembers(t, b, 2)
			got := a.Members()[1]
			if got.Name != "b" || got.Meta.Address != b.Addr() || got.Meta.CPUs != 4 {
				t.Fatalf("a sees %+v", got)
			}
			if err := b.SetMeta(Meta{Address: b.Addr(), JoinSeq: 42}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for a.Members()[1].Meta.JoinSeq != 42 {
				if time.Now().After(deadline) {
					t.Fatal("meta update not seen")
				}
				time.Sleep(10 * time.Millisecond)
			}
			crash := time.Now()
			if err := b.Shutdown(); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-a.Departed():
				if m.Name != "b" || m.Meta.JoinSeq != 42 {
					t.Fatalf("departed %+v", m)
				}
				t.Logf("crash seen after %s", time.Since(crash).Round(time.Millisecond))
			case <-time.After(10 * time.Second):
				t.Fatal("crash not detected")
			}
		})
	}
}

func TestMetaTooLarge(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = "big"
	cfg.Meta = Meta{Address: strings.Repeat("x", 600)}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "limit 512") {
		t.Fatalf("err = %v", err)
	}
}

// TestRejoinAfterCrash: a member that crashed and comes back under the same name and
// address is alive again for the others.
func TestRejoinAfterCrash(t *testing.T) {
	a := start(t, "a", nil)
	b := start(t, "b", nil, a.Addr())
	waitMembers(t, a, 2)
	addr := b.Addr()
	_ = b.Shutdown()
	<-a.Departed()
	cfg := DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.Join = "b", addr, []string{a.Addr()}
	cfg.Logger = slog.New(slog.DiscardHandler)
	b2, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Shutdown() })
	waitMembers(t, a, 2)
}
