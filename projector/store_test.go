// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import "testing"

func TestGenerationNames(t *testing.T) {
	tests := []struct {
		name string
		gen  uint64
		ok   bool
	}{
		{"waggle_envs", 1, true},
		{"waggle_hosts", 1, true},
		{"waggle_envs_2", 2, true},
		{"waggle_hosts_17", 17, true},
		{"waggle_view", 0, false},
		{"waggle_envs_x", 0, false},
		{"waggle_tokens", 0, false},
		{"waggle_envs_", 0, false},
	}
	for _, tt := range tests {
		gen, ok := generationOf(tt.name)
		if gen != tt.gen || ok != tt.ok {
			t.Errorf("generationOf(%q) = %d, %v; want %d, %v", tt.name, gen, ok, tt.gen, tt.ok)
		}
	}
	for _, gen := range []uint64{1, 2, 99} {
		g := generation(gen)
		for _, b := range []string{g.Envs, g.Hosts} {
			if got, ok := generationOf(b); !ok || got != gen {
				t.Errorf("bucket %s of generation %d reads as %d, %v", b, gen, got, ok)
			}
		}
	}
}

func FuzzGenerationOf(f *testing.F) {
	for _, s := range []string{"waggle_envs", "waggle_envs_3", "waggle_hosts_18446744073709551615", "waggle_envs_-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		gen, ok := generationOf(name)
		if !ok {
			return
		}
		g := generation(gen)
		if gen > 1 && name != g.Envs && name != g.Hosts {
			// Only canonical names map back (no leading zeros or signs).
			if _, ok := generationOf(g.Envs); !ok {
				t.Fatalf("%q: generation %d has unreadable buckets", name, gen)
			}
		}
	})
}
