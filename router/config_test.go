// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import "testing"

func TestConfigNoAuthNeedsLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen string
		ok     bool
	}{
		{"127.0.0.1:0", true},
		{"localhost:8080", true},
		{"[::1]:8080", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"10.0.0.1:8080", false},
	} {
		cfg := DefaultConfig()
		cfg.Listen, cfg.NoAuth = tc.listen, true
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("listen %q with --no-auth: err %v, want ok=%v", tc.listen, err, tc.ok)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
}
