// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestCreateWithoutCgroup2(t *testing.T) {
	root := filepath.Join(t.TempDir(), "waggle")
	if _, err := Create(root, "vm1", Limits{CPUs: 1, MemoryBytes: 1 << 30}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Create outside a cgroup2 hierarchy: %v, want ErrUnavailable", err)
	}
	if err := RemovePath(filepath.Join(root, "vm1")); err != nil {
		t.Errorf("RemovePath of a missing group: %v", err)
	}
}
