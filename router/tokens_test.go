// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events/eventstest"
)

func TestTokens(t *testing.T) {
	ctx := context.Background()
	toks, err := OpenTokens(ctx, eventstest.Start(t).Log.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	key, tok, err := toks.Create(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, keyPrefix) || strings.Contains(tok.SHA256, key) {
		t.Fatalf("key %q, record %+v", key, tok)
	}
	got, err := toks.Authenticate(ctx, key)
	if err != nil || got.Tenant != "acme" || got.ID != tok.ID {
		t.Fatalf("authenticate: %+v, %v", got, err)
	}
	bad := []string{"", "wgl_", key + "0", key[:len(key)-1] + "x", strings.Replace(key, tok.ID, "0123456789abcdef", 1)}
	for _, k := range bad {
		if _, err := toks.Authenticate(ctx, k); !errors.Is(err, ErrBadKey) {
			t.Errorf("authenticate(%q) = %v, want ErrBadKey", k, err)
		}
	}
	list, err := toks.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := toks.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Authenticate(ctx, key); !errors.Is(err, ErrBadKey) {
		t.Fatalf("revoked key authenticates: %v", err)
	}
	if _, err := toks.Revoke(ctx, "nope"); err == nil {
		t.Fatal("revoking an unknown id succeeded")
	}
	if _, _, err := toks.Create(ctx, "Bad Tenant", ""); err == nil {
		t.Fatal("created a key for an invalid tenant")
	}
}

func TestEnsureFirstToken(t *testing.T) {
	ctx := context.Background()
	js := eventstest.Start(t).Log.JetStream()
	dir := t.TempDir()
	key, created, err := EnsureFirstToken(ctx, js, dir)
	if err != nil || !created {
		t.Fatalf("first: %v, created %v", err, created)
	}
	fi, err := os.Stat(filepath.Join(dir, APIKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	again, created, err := EnsureFirstToken(ctx, js, dir)
	if err != nil || created || again != key {
		t.Fatalf("second: %q %v %v", again, created, err)
	}
	toks, err := OpenTokens(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := toks.Authenticate(ctx, key)
	if err != nil || tok.Tenant != DefaultTenant {
		t.Fatalf("first key: %+v %v", tok, err)
	}
	if _, err := toks.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureFirstToken(ctx, js, dir); err == nil {
		t.Fatal("a revoked stored key was accepted")
	}
}

func FuzzKeyID(f *testing.F) {
	f.Add("wgl_0123456789abcdef_" + strings.Repeat("ab", 24))
	f.Add("wgl__")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, key string) {
		id, ok := keyID(key)
		if ok && (len(id) != 16 || !strings.HasPrefix(key, keyPrefix+id+"_")) {
			t.Fatalf("keyID(%q) = %q", key, id)
		}
	})
}
