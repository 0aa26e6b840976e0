// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// startServer starts a standalone embedded server with file storage in a temp dir.
func startServer(t testing.TB, port int) *Server {
	t.Helper()
	srv, err := StartServer(ServerConfig{DataDir: t.TempDir(), Port: port, ServerName: "test"})
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func connect(t testing.TB, srv *Server) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newTestLog starts a server and opens the log on an in-process connection.
func newTestLog(t testing.TB) (*Server, *Log) {
	t.Helper()
	srv := startServer(t, -1)
	return srv, openTestLog(t, connect(t, srv))
}

func openTestLog(t testing.TB, nc *nats.Conn, opts ...LogOption) *Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := OpenLog(ctx, nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func envEvent(t testing.TB, host, env, typ string, data any) *Event {
	t.Helper()
	ev, err := NewEnvEvent(host, env, typ, "tenant-1", data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// checkChain fails unless evs form a gap-free, fork-free hash chain starting empty.
func checkChain(t testing.TB, evs []*Event) {
	t.Helper()
	prev := ""
	var lastSeq uint64
	for i, ev := range evs {
		if ev.Prev != prev {
			t.Fatalf("event %d (seq %d): prev %q, want %q", i, ev.Seq, ev.Prev, prev)
		}
		if ev.Seq <= lastSeq {
			t.Fatalf("event %d: seq %d after %d", i, ev.Seq, lastSeq)
		}
		prev, lastSeq = Hash(ev.Raw), ev.Seq
	}
}
