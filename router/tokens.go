// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// keyPrefix starts every API key, so a leaked key is easy to recognise.
const keyPrefix = "wgl_"

// APIKeyFile is the file in a data directory that holds the first API key.
const APIKeyFile = "api-key"

// ErrBadKey means an API key is malformed, unknown or revoked.
var ErrBadKey = errors.New("invalid or revoked API key")

// Token is a stored API key: never the key itself, only its SHA-256.
type Token struct {
	ID      string    `json:"id"`
	Tenant  string    `json:"tenant"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"`
	SHA256  string    `json:"sha256"`
}

// tenantPattern is what a tenant id may contain: it appears in principals and KV keys.
var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidTenant reports whether tenant can name a tenant.
func ValidTenant(tenant string) error {
	if !tenantPattern.MatchString(tenant) {
		return fmt.Errorf("invalid tenant %q: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", tenant)
	}
	return nil
}

// Tokens is the API key store.
type Tokens struct {
	kv jetstream.KeyValue
}

// OpenTokens opens the token bucket (events.TokensBucket), which the admin's setup created.
func OpenTokens(ctx context.Context, js jetstream.JetStream) (*Tokens, error) {
	kv, err := js.KeyValue(ctx, events.TokensBucket)
	if err != nil {
		return nil, fmt.Errorf("open token bucket %s (the admin's setup creates it): %w", events.TokensBucket, err)
	}
	return &Tokens{kv: kv}, nil
}

// Create makes a new API key for tenant and returns the key (shown once) and its record.
func (t *Tokens) Create(ctx context.Context, tenant, name string) (string, Token, error) {
	if err := ValidTenant(tenant); err != nil {
		return "", Token{}, err
	}
	var idb [8]byte
	var secret [24]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	id := hex.EncodeToString(idb[:])
	key := keyPrefix + id + "_" + hex.EncodeToString(secret[:])
	tok := Token{ID: id, Tenant: tenant, Name: name, Created: time.Now().UTC(), SHA256: hashKey(key)}
	raw, err := json.Marshal(tok)
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	if _, err := t.kv.Create(ctx, id, raw); err != nil {
		return "", Token{}, fmt.Errorf("create token %s: %w", id, err)
	}
	return key, tok, nil
}

// Authenticate returns the token of a valid, unrevoked key, or ErrBadKey.
func (t *Tokens) Authenticate(ctx context.Context, key string) (Token, error) {
	id, ok := keyID(key)
	if !ok {
		return Token{}, ErrBadKey
	}
	tok, err := t.get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Token{}, ErrBadKey
	}
	if err != nil {
		return Token{}, err
	}
	if subtle.ConstantTimeCompare([]byte(tok.SHA256), []byte(hashKey(key))) != 1 || !tok.Revoked.IsZero() {
		return Token{}, ErrBadKey
	}
	return tok, nil
}

// List returns every token record, oldest first.
func (t *Tokens) List(ctx context.Context) ([]Token, error) {
	lister, err := t.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var toks []Token
	for id := range lister.Keys() {
		tok, err := t.get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		toks = append(toks, tok)
	}
	sort.Slice(toks, func(i, j int) bool { return toks[i].Created.Before(toks[j].Created) })
	return toks, nil
}

// Revoke marks a token revoked; its key stops working at once. Revoking twice is harmless.
func (t *Tokens) Revoke(ctx context.Context, id string) (Token, error) {
	entry, err := t.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Token{}, fmt.Errorf("token %q not found", id)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	var tok Token
	if err := json.Unmarshal(entry.Value(), &tok); err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	if !tok.Revoked.IsZero() {
		return tok, nil
	}
	tok.Revoked = time.Now().UTC()
	raw, err := json.Marshal(tok)
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	if _, err := t.kv.Update(ctx, id, raw, entry.Revision()); err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return tok, nil
}

func (t *Tokens) get(ctx context.Context, id string) (Token, error) {
	entry, err := t.kv.Get(ctx, id)
	if err != nil {
		return Token{}, fmt.Errorf("read token %s: %w", id, err)
	}
	var tok Token
	if err := json.Unmarshal(entry.Value(), &tok); err != nil {
		return Token{}, fmt.Errorf("read token %s: %w", id, err)
	}
	return tok, nil
}

// keyID extracts the token id from a key of the form wgl_<16 hex>_<48 hex>.
func keyID(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(secret) != 48 || !isHex(id) || !isHex(secret) {
		return "", false
	}
	return id, true
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// EnsureFirstToken gives a data directory its first API key: if <dataDir>/api-key holds a
// valid key it returns that key (created false); if the file is missing it creates a key for
// tenant DefaultTenant, stores it there with mode 0600 and returns it (created true). A stored
// key that no longer authenticates (revoked) is an error: remove the file to get a new one.
func EnsureFirstToken(ctx context.Context, js jetstream.JetStream, dataDir string) (string, bool, error) {
	tokens, err := OpenTokens(ctx, js)
	if err != nil {
		return "", false, err
	}
	path := filepath.Join(dataDir, APIKeyFile)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		key := strings.TrimSpace(string(raw))
		if _, err := tokens.Authenticate(ctx, key); err != nil {
			return "", false, fmt.Errorf("the API key in %s does not authenticate (%w); remove the file to create a new one", path, err)
		}
		return key, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("read API key: %w", err)
	}
	key, _, err := tokens.Create(ctx, DefaultTenant, "first key")
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("store API key: %w", err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("store API key: %w", err)
	}
	return key, true, nil
}
