// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"slices"
	"testing"

	"github.com/waggle-dev/waggle/events"
)

// TestGenerationSlots: consecutive generations use different buckets, every other one the same,
// and every bucket is one the broker's permissions name (events.ViewBuckets).
func TestGenerationSlots(t *testing.T) {
	for gen := uint64(1); gen < 6; gen++ {
		g, n := generation(gen), generation(gen+1)
		if g.Envs == n.Envs || g.Hosts == n.Hosts {
			t.Fatalf("generations %d and %d share a bucket: %+v %+v", gen, gen+1, g, n)
		}
		if generation(gen+2).Envs != g.Envs {
			t.Fatalf("generation %d does not reuse the slot of %d", gen+2, gen)
		}
		for _, b := range []string{g.Envs, g.Hosts} {
			if !slices.Contains(events.ViewBuckets(), b) {
				t.Fatalf("bucket %s of generation %d is not a view bucket", b, gen)
			}
		}
	}
	if g := generation(1); g.Envs != events.EnvsBucket || g.Hosts != events.HostsBucket {
		t.Fatalf("generation 1 is %+v", g)
	}
}
