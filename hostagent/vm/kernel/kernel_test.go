// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package kernel

import (
	"slices"
	"testing"
)

const sampleDep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`

func TestLoadOrder(t *testing.T) {
	mods, err := ParseModulesDep([]byte(sampleDep))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		wanted []string
		want   []string
	}{
		{"virtio before virtio_ring is wrong", []string{"virtio"}, []string{"virtio_ring", "virtio"}},
		{"ext4 deps last-listed first", []string{"ext4"}, []string{"jbd2", "mbcache", "crc16", "ext4"}},
		{"default set", []string{"crc32c_generic", "ext4", "virtio_mmio", "virtio_blk", "virtio_net"},
			[]string{"crc32c_generic", "jbd2", "mbcache", "crc16", "ext4", "virtio_ring", "virtio", "virtio_mmio",
				"virtio_blk", "failover", "net_failover", "virtio_net"}},
		{"dash name", []string{"virtio-net"}, []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order, err := LoadOrder(mods, tt.wanted)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range order {
				names = append(names, ModuleName(p))
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("got %v, want %v", names, tt.want)
			}
		})
	}
	if _, err := LoadOrder(mods, []string{"nope"}); err == nil {
		t.Error("unknown module: want error")
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	for _, in := range []string{"no colon here", ": dep.ko"} {
		if _, err := ParseModulesDep([]byte(in)); err == nil {
			t.Errorf("%q: want error", in)
		}
	}
}

func TestPayloadOffsets(t *testing.T) {
	img := append([]byte("header\x1f\x8b\x08gz...."), []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}...)
	got := PayloadOffsets(img)
	if len(got) != 2 || got[0].Format != "gzip" || got[0].Offset != 6 || got[1].Format != "xz" || got[1].Offset != 15 {
		t.Errorf("got %+v", got)
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte(sampleDep), "virtio_net")
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"), "a")
	f.Fuzz(func(t *testing.T, data []byte, want string) {
		mods, err := ParseModulesDep(data)
		if err != nil {
			return
		}
		order, err := LoadOrder(mods, []string{want})
		if err != nil {
			return
		}
		seen := make(map[string]bool)
		for _, p := range order {
			if seen[p] {
				t.Fatalf("%s listed twice", p)
			}
			seen[p] = true
		}
	})
}
