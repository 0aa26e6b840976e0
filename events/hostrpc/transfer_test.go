// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

func TestInline(t *testing.T) {
	const payload = 1 << 20
	fit := (payload - hostrpc.Envelope) / 4 * 3 // the largest content that fits as base64
	tests := []struct {
		size int
		want bool
	}{{0, true}, {fit, true}, {fit + 1, false}, {payload, false}}
	for _, tt := range tests {
		if got := hostrpc.Inline(tt.size, payload); got != tt.want {
			t.Errorf("Inline(%d, %d) = %v, want %v", tt.size, payload, got, tt.want)
		}
	}
}

func TestTransfers(t *testing.T) {
	n := eventstest.Start(t)
	tr := hostrpc.NewTransfers(n.Log.JetStream())
	ctx := t.Context()
	content := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300_000) // several chunks
	ref, err := tr.Put(ctx, content)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ref     string
		max     int64
		wantErr error
	}{
		{name: "too large", ref: ref, max: int64(len(content)) - 1, wantErr: hostrpc.ErrTransferTooLarge},
		{name: "exact limit", ref: ref, max: int64(len(content))},
		{name: "unknown", ref: ulid.Make().String(), max: 1, wantErr: hostrpc.ErrTransferNotFound},
		{name: "not a name Put makes", ref: "a/../b", max: 1, wantErr: hostrpc.ErrInvalidRef},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tr.Get(ctx, tt.ref, tt.max)
			if !errors.Is(err, tt.wantErr) || (err == nil && !bytes.Equal(got, content)) {
				t.Fatalf("Get: %d bytes, %v; want error %v", len(got), err, tt.wantErr)
			}
		})
	}
	for range 2 { // deleting twice is not an error
		if err := tr.Delete(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.Get(ctx, ref, int64(len(content))); !errors.Is(err, hostrpc.ErrTransferNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}
