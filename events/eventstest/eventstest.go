// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package eventstest starts a real embedded JetStream server with waggle's event log for tests,
// and stops it when the test ends.
package eventstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
)

// openTimeout bounds opening the event log on a new connection.
const openTimeout = 30 * time.Second

// Node is one embedded server with an in-process connection and the opened event log.
type Node struct {
	Server *events.Server
	NC     *nats.Conn
	Log    *events.Log
}

// Start runs a standalone server with a file store in a temporary directory, listening on a
// random loopback port (Server.ClientURL) for other processes. Everything stops at cleanup.
func Start(t testing.TB) *Node {
	t.Helper()
	srv, err := events.StartServer(events.ServerConfig{DataDir: t.TempDir(), ServerName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	n := &Node{Server: srv}
	n.NC, n.Log = n.Connect(t)
	return n
}

// Connect opens another in-process connection to the node and the event log on it, as a
// separate client (a projector, a host, a router) has. The connection is closed at cleanup;
// closing it earlier simulates that client's crash.
func (n *Node) Connect(t testing.TB) (*nats.Conn, *events.Log) {
	t.Helper()
	nc, err := n.Server.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	log, err := events.OpenLog(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, log
}
