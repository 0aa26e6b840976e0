// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"1000", 1000}, {"4GiB", 4 << 30}, {"500MiB", 500 << 20}, {"1.5 GiB", 3 << 29}, {"2GB", 2e9}, {"64KiB", 64 << 10},
		{"10B", 10}, {"", 0}, {"0", 0}, {"-1GiB", 0}, {"GiB", 0}, {"4 gigs", 0}, {"NaN", 0}, {"1e30TiB", 0}, {"0.1B", 0},
	} {
		got, err := parseByteSize(tt.in)
		if tt.want == 0 {
			if !errors.Is(err, errBadSize) {
				t.Errorf("%q: %d, %v; want errBadSize", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"4GiB", "1000", "1.5 MB", "-3", "9e18"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseByteSize(s)
		if err == nil && n < 1 {
			t.Fatalf("%q parsed as %d", s, n)
		}
	})
}
