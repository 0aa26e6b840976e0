// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// TestOutputStream plays a host publishing chunks out of order, twice, malformed and on
// another host's subject: the router hands on exactly the valid chunks of its own stream, in
// sequence order, and finish returns once the reply's count is delivered (or, for chunks that
// never come, after streamTail).
func TestOutputStream(t *testing.T) {
	c := eventstest.Start(t)
	hostNC, _ := c.Connect(t)
	r := &Router{nc: c.NC, logger: slog.New(slog.DiscardHandler)}
	publish := func(subject string, seq uint64, fd, data string) {
		t.Helper()
		m := hostrpc.Chunk{Seq: seq, Stream: fd, Data: []byte(data)}.Msg(subject)
		if err := hostNC.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	reply := func(n uint64) *nats.Msg {
		m := nats.NewMsg("reply")
		m.Header.Set(hostrpc.HeaderStreamChunks, strconv.FormatUint(n, 10))
		return m
	}
	tests := []struct {
		name   string
		send   func(subject, other string)
		chunks uint64
		want   []string
		slow   bool // the reply promises chunks that never come
	}{
		{"in order", func(s, _ string) {
			publish(s, 1, hostrpc.Stdout, "a")
			publish(s, 2, hostrpc.Stderr, "b")
		}, 2, []string{"stdout:a", "stderr:b"}, false},
		{"out of order and repeated", func(s, _ string) {
			publish(s, 3, hostrpc.Stdout, "c")
			publish(s, 1, hostrpc.Stdout, "a")
			publish(s, 1, hostrpc.Stdout, "again")
			publish(s, 2, hostrpc.Stdout, "b")
		}, 3, []string{"stdout:a", "stdout:b", "stdout:c"}, false},
		{"malformed and foreign", func(s, other string) {
			bad := nats.NewMsg(s)
			bad.Header.Set("Waggle-Seq", "1")
			bad.Header.Set("Waggle-Fd", "stdin")
			_ = hostNC.PublishMsg(bad)
			publish(other, 1, hostrpc.Stdout, "not mine")
			publish(s, 1, hostrpc.Stdout, "a")
		}, 1, []string{"stdout:a"}, false},
		{"lost", func(s, _ string) {
			publish(s, 2, hostrpc.Stdout, "b")
		}, 2, nil, true},
		{"nothing", func(string, string) {}, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			id, s, err := r.openOutput(context.Background(), "h1", func(c hostrpc.Chunk) {
				got = append(got, c.Stream+":"+string(c.Data))
			})
			if err != nil {
				t.Fatal(err)
			}
			// A host publishes only after the request, which follows the subscription.
			if err := c.NC.Flush(); err != nil {
				t.Fatal(err)
			}
			tt.send(hostrpc.StreamSubject("h1", id), hostrpc.StreamSubject("h2", id))
			if err := hostNC.Flush(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			s.finish(reply(tt.chunks))
			took := time.Since(start)
			if len(got) != len(tt.want) {
				t.Fatalf("delivered %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("delivered %q, want %q", got, tt.want)
				}
			}
			if slow := took >= streamTail; slow != tt.slow {
				t.Errorf("finish took %s; waiting for lost chunks: %v", took, tt.slow)
			}
		})
	}
	t.Run("no reply", func(t *testing.T) {
		_, s, err := r.openOutput(context.Background(), "h1", func(hostrpc.Chunk) { t.Error("chunk delivered") })
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		s.finish(nil)
		if took := time.Since(start); took > time.Second/2 {
			t.Errorf("finish without a reply took %s", took)
		}
	})
}
