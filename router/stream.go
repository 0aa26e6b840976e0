// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// OutputFunc receives a command's output while it runs, one chunk at a time in the order the
// command wrote it. It is called from one goroutine and must not block for long.
type OutputFunc func(hostrpc.Chunk)

type outputKey struct{}

// WithOutput returns ctx asking for the output of the command a call runs (Exec, Install,
// WaitProcess) as it arrives: fn gets each chunk before the call returns its result, which
// still holds all of the output. A chunk that is lost on the way is only missing from fn.
func WithOutput(ctx context.Context, fn OutputFunc) context.Context {
	return context.WithValue(ctx, outputKey{}, fn)
}

func outputFrom(ctx context.Context) OutputFunc {
	fn, _ := ctx.Value(outputKey{}).(OutputFunc)
	return fn
}

// Bounds of one output stream at the router.
const (
	// streamBuffer is how many chunks may wait for fn; beyond it NATS drops them (and the gap
	// is logged).
	streamBuffer = 4096
	// streamTail is how long the router waits, after the reply, for chunks still on the way.
	streamTail = time.Second
)

// outputStream receives the chunks of one call from its host and hands them to fn in order.
type outputStream struct {
	fn     OutputFunc
	sub    *nats.Subscription
	msgs   chan *nats.Msg
	total  chan uint64 // the reply's chunk count, once it is known
	done   chan struct{}
	logger *slog.Logger
}

// openOutput subscribes to a fresh stream of host and starts delivering its chunks to fn; the
// caller sends the stream's id in its request and ends the stream with finish.
func (r *Router) openOutput(ctx context.Context, host string, fn OutputFunc) (id string, s *outputStream, err error) {
	id = hostrpc.NewStreamID()
	s = &outputStream{fn: fn, msgs: make(chan *nats.Msg, streamBuffer), total: make(chan uint64, 1),
		done: make(chan struct{}), logger: r.logger.With("request", RequestID(ctx), "host", host)}
	// The subscription reaches the server before the request, which follows on the same
	// connection: no chunk can be published before it exists.
	if s.sub, err = r.nc.ChanSubscribe(hostrpc.StreamSubject(host, id), s.msgs); err != nil {
		return "", nil, fmt.Errorf("subscribe to output stream: %w", err)
	}
	go s.deliver()
	return id, s, nil
}

// deliver hands chunks to fn in sequence order until the reply's count is reached (or does
// not come in time), then unsubscribes.
func (s *outputStream) deliver() {
	defer close(s.done)
	defer func() { _ = s.sub.Unsubscribe() }()
	next := uint64(1)
	early := map[uint64]hostrpc.Chunk{} // arrived before their predecessors
	want := ^uint64(0)
	total := s.total
	var tail <-chan time.Time
	bad := 0
	for next <= want {
		select {
		case m := <-s.msgs:
			c, err := hostrpc.ParseChunk(m)
			if err != nil {
				bad++
				continue
			}
			if c.Seq < next || c.Seq > want || len(early) >= streamBuffer {
				continue
			}
			early[c.Seq] = c
			for c, ok := early[next]; ok; c, ok = early[next] {
				delete(early, next)
				next++
				s.fn(c)
			}
		case n, ok := <-total:
			if !ok {
				return
			}
			want, total = n, nil
			tail = time.After(streamTail)
		case <-tail:
			s.logger.Warn("output chunks lost: the result holds all of the output", "got", next-1, "want", want,
				"early", len(early), "invalid", bad)
			return
		}
	}
	if bad > 0 {
		s.logger.Warn("invalid output chunks ignored", "count", bad)
	}
}

// finish tells the stream how many chunks the host published (from its reply; 0 without one)
// and waits until they are delivered or streamTail has passed.
func (s *outputStream) finish(reply *nats.Msg) {
	if reply == nil {
		close(s.total) // no reply: nothing more to wait for
	} else {
		s.total <- hostrpc.ChunkCount(reply)
	}
	<-s.done
}
