// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"strings"
	"testing"
	"time"
)

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

// TestConfigStuckAfterExceedsBootTimeout: a router must not end an environment its creator
// still waits for.
func TestConfigStuckAfterExceedsBootTimeout(t *testing.T) {
	for _, tc := range []struct {
		boot, stuck, sweep time.Duration
		ok                 bool
	}{
		{2 * time.Minute, 3 * time.Minute, 30 * time.Second, true},
		{5 * time.Minute, 3 * time.Minute, 30 * time.Second, false},
		{3 * time.Minute, 3 * time.Minute, 30 * time.Second, false},
		{2 * time.Minute, 3 * time.Minute, 0, false},
	} {
		cfg := DefaultConfig()
		cfg.BootTimeout, cfg.StuckAfter, cfg.SweepInterval = tc.boot, tc.stuck, tc.sweep
		err := cfg.Validate()
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "must exceed the boot timeout") {
			t.Errorf("boot timeout %s, stuck after %s, sweep %s: err %v, want ok=%v", tc.boot, tc.stuck, tc.sweep, err, tc.ok)
		}
	}
}
