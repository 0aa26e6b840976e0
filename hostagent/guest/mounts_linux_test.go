// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteHosts(t *testing.T) {
	tests := []struct {
		name, old, want string
		missing         bool
	}{
		{name: "missing file", missing: true, want: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tenv-1\n"},
		{name: "appended", old: "127.0.0.1 localhost", want: "127.0.0.1 localhost\n127.0.1.1\tenv-1\n"},
		{name: "already there", old: "127.0.0.1 localhost\n127.0.1.1 env-1 x\n", want: "127.0.0.1 localhost\n127.0.1.1 env-1 x\n"},
		{name: "other name replaced", old: "127.0.0.1 localhost\n127.0.1.1 old\n::1 localhost", want: "127.0.0.1 localhost\n::1 localhost\n127.0.1.1\tenv-1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hosts")
			if !tt.missing {
				if err := os.WriteFile(p, []byte(tt.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeHosts(p, "env-1"); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != tt.want {
				t.Fatalf("hosts %q %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	if err := waitFor(time.Second, func() bool { n++; return n == 3 }, "x"); err != nil || n != 3 {
		t.Fatalf("waitFor: %v after %d polls", err, n)
	}
	if err := waitFor(10*time.Millisecond, func() bool { return false }, "thing did not appear"); err == nil {
		t.Fatal("waitFor did not time out")
	}
}
