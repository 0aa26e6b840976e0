// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestStopRetriedAfterFailure: a Stop that fails (here: the VM's cgroup cannot be removed) is
// not remembered; the next Stop does the work again and succeeds once the cause is gone.
func TestStopRetriedAfterFailure(t *testing.T) {
	cgroups := t.TempDir()
	dir := filepath.Join(t.TempDir(), "vm1")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A cgroup directory that still holds something cannot be removed.
	busy := filepath.Join(cgroups, "vm1", "child")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &Machine{id: "vm1", dir: dir, cgroupRoot: cgroups}
	ctx := context.Background()
	if err := m.Stop(ctx); err == nil {
		t.Fatal("Stop succeeded with its cgroup busy")
	}
	if err := os.Remove(busy); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("second Stop after the cause went away: %v", err)
	}
	for _, p := range []string{dir, filepath.Join(cgroups, "vm1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after Stop: %v", p, err)
		}
	}
	if err := m.Stop(ctx); err != nil {
		t.Errorf("Stop after a successful one: %v", err)
	}
}
