// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkAppend measures appends with deduplication (Nats-Msg-Id) and optimistic concurrency
// (expected last sequence over the aggregate) on one embedded node with file storage, over an
// in-process connection and over TCP loopback. Each writer owns one aggregate and appends after
// the head it got back. Target: >= 10,000 events/s from 8 writers on 8 aggregates.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		conn    string
		writers int
	}{{"inproc", 1}, {"inproc", 8}, {"tcp", 1}, {"tcp", 8}} {
		b.Run(fmt.Sprintf("conn=%s/writers=%d", bc.conn, bc.writers), func(b *testing.B) {
			writers := bc.writers
			var l *Log
			if bc.conn == "tcp" {
				srv := startServer(b, 0)
				nc, err := nats.Connect(srv.ClientURL())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(nc.Close)
				l = openTestLog(b, nc)
			} else {
				_, l = newTestLog(b)
			}
			ctx := testCtx(b)
			data := Touched{LastActive: time.Now(), Calls: 3}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				n := b.N / writers
				if w < b.N%writers {
					n++
				}
				env := fmt.Sprintf("bench%d", w)
				wg.Go(func() {
					var head Head
					for range n {
						ev, err := NewEnvEvent("h1", env, EnvTouched, "tenant-1", data)
						if err == nil {
							head, err = l.Append(ctx, ev, head)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
