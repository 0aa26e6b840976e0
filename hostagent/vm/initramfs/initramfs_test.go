// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package initramfs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildReadableByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	init := write("waggle-init", "#!init")
	mods := []string{write("virtio_ring.ko", "ring"), write("virtio.ko", "virtio!")}
	cache := filepath.Join(dir, "cache")
	p1, err := Build(context.Background(), cache, init, mods)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Build(context.Background(), cache, init, mods)
	if err != nil || p1 != p2 {
		t.Fatalf("second build: %s %v, want cached %s", p2, err, p1)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	arch, err := os.Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer arch.Close()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir, cmd.Stdin = out, arch
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v: %s", err, b)
	}
	for name, want := range map[string]string{
		"init":                       "#!init",
		"lib/modules/virtio.ko":      "virtio!",
		"lib/modules/virtio_ring.ko": "ring",
		"lib/modules.order":          "virtio_ring.ko\nvirtio.ko\n",
	} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "init")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("init mode: %v %v", st, err)
	}
}

func TestWriterRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "/", "a\x00b"} {
		w := NewWriter(&bytes.Buffer{})
		if err := w.File(name, 0o644, nil); err == nil || !strings.Contains(err.Error(), "bad name") {
			t.Errorf("%q: %v", name, err)
		}
	}
}
