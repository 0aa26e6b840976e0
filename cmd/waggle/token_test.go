// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events/eventstest"
)

// TestTokenCommands creates, lists and revokes a key against a real server; create prints
// only the key.
func TestTokenCommands(t *testing.T) {
	t.Setenv("WAGGLE_NATS_URL", eventstest.Start(t).Server.ClientURL())

	out, err := waggle(t, "token", "create", "--tenant", "acme", "--name", "ci")
	key := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(key, "wgl_") || strings.Count(out, "\n") != 1 {
		t.Fatalf("token create: %v %q", err, out)
	}
	id := strings.Split(key, "_")[1]
	out, err = waggle(t, "token", "ls")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "acme") || strings.Contains(out, key) {
		t.Fatalf("token ls: %v\n%s", err, out)
	}
	if out, err := waggle(t, "token", "revoke", id); err != nil || !strings.Contains(out, "revoked key "+id) {
		t.Fatalf("token revoke: %v %s", err, out)
	}
	out, err = waggle(t, "token", "ls")
	if err != nil || strings.Count(out, "T") < 3 || strings.HasSuffix(strings.TrimSpace(out), "-") {
		t.Fatalf("token ls after revoke shows no revocation time: %v\n%s", err, out)
	}
	if _, err := waggle(t, "token", "create"); err == nil {
		t.Fatal("token create without --tenant succeeded")
	}
	if _, err := waggle(t, "router", "--no-auth", "--listen", "0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("router --no-auth on 0.0.0.0: %v", err)
	}
}
