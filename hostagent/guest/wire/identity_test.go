// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func validIdentity(t testing.TB) Identity {
	k, _ := testKey(t)
	return Identity{Hostname: "clone-1", AuthorizedKey: MarshalKey(k), Entropy: bytes.Repeat([]byte{7}, 64), UnixNano: time.Now().UnixNano()}
}

func TestIdentityRoundTrip(t *testing.T) {
	id := validIdentity(t)
	payload, err := EncodeIdentity(id)
	if err != nil {
		t.Fatal(err)
	}
	got, key, err := DecodeIdentity(payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != id.Hostname || !bytes.Equal(got.Entropy, id.Entropy) || got.UnixNano != id.UnixNano || MarshalKey(key) != id.AuthorizedKey {
		t.Errorf("round trip: %+v, want %+v", got, id)
	}
	hostKey, _ := testKey(t)
	back, err := DecodeIdentityReply(EncodeIdentityReply(hostKey))
	if err != nil || MarshalKey(back) != MarshalKey(hostKey) {
		t.Errorf("reply round trip: %v %v", back, err)
	}
}

func TestIdentityRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Identity)
		want   string
	}{
		{"bad hostname", func(id *Identity) { id.Hostname = "a b" }, "host name"},
		{"no hostname", func(id *Identity) { id.Hostname = "" }, "host name"},
		{"little entropy", func(id *Identity) { id.Entropy = id.Entropy[:MinEntropy-1] }, "entropy"},
		{"much entropy", func(id *Identity) { id.Entropy = make([]byte, MaxEntropy+1) }, "entropy"},
		{"time zero", func(id *Identity) { id.UnixNano = 0 }, "time"},
		{"time far ahead", func(id *Identity) { id.UnixNano = maxClock + 1 }, "time"},
		{"bad key", func(id *Identity) { id.AuthorizedKey = "ssh-ed25519 AAAA" }, "authorized key"},
		{"two keys", func(id *Identity) { id.AuthorizedKey += "\n" + id.AuthorizedKey }, "more than one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := validIdentity(t)
			tt.change(&id)
			if _, err := EncodeIdentity(id); !errors.Is(err, ErrBadIdentity) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("EncodeIdentity: %v, want ErrBadIdentity mentioning %q", err, tt.want)
			}
		})
	}
	for _, payload := range []string{"", "null", "[]", `{"hostname":1}`, strings.Repeat(" ", maxIdentitySize+1)} {
		if _, _, err := DecodeIdentity([]byte(payload)); !errors.Is(err, ErrBadIdentity) {
			t.Errorf("DecodeIdentity(%.20q): %v, want ErrBadIdentity", payload, err)
		}
	}
	for _, payload := range []string{"", "{}", `{"host_key":"x"}`} {
		if _, err := DecodeIdentityReply([]byte(payload)); !errors.Is(err, ErrBadIdentity) {
			t.Errorf("DecodeIdentityReply(%q): %v, want ErrBadIdentity", payload, err)
		}
	}
}

func FuzzDecodeIdentity(f *testing.F) {
	good, _ := EncodeIdentity(validIdentity(f))
	f.Add(good)
	f.Add([]byte(`{"hostname":"h","entropy":"AAAA","time_unix_nano":1}`))
	f.Add([]byte(`{"host_key":"ssh-ed25519 AAAA"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		id, key, err := DecodeIdentity(payload)
		if err == nil {
			if key == nil || CheckHostname(id.Hostname) != nil || len(id.Entropy) < MinEntropy || len(id.Entropy) > MaxEntropy {
				t.Fatalf("accepted invalid identity %+v", id)
			}
			again, err := EncodeIdentity(id)
			if err != nil {
				t.Fatalf("re-encoding an accepted identity: %v", err)
			}
			if _, _, err := DecodeIdentity(again); err != nil {
				t.Fatalf("re-decoding: %v", err)
			}
		}
		if k, err := DecodeIdentityReply(payload); err == nil && k == nil {
			t.Fatal("reply accepted without a key")
		}
	})
}
