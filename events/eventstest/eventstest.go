// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package eventstest starts a real embedded JetStream server with waggle's event log for tests
// (set up as a cluster's admin would: the stream and the buckets beside it), and stops it when
// the test ends.
package eventstest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// openTimeout bounds opening the event log on a new connection.
const openTimeout = 30 * time.Second

// Node is one embedded server with an in-process connection and the opened event log.
type Node struct {
	Server *events.Server
	NC     *nats.Conn
	Log    *events.Log
	// Trust is the node's NATS trust when it requires credentials (StartSecure), else nil.
	Trust *access.Trust
}

// Start runs a standalone server with a file store in a temporary directory, listening on a
// random loopback port (Server.ClientURL) for other processes, with no authentication (for
// tests of one package's logic). Everything stops at cleanup.
func Start(t testing.TB) *Node {
	t.Helper()
	return start(t, nil)
}

// StartSecure is Start with the broker's trust on, as in every real cluster: clients need a
// role's credential (Creds) and get only that role's permissions. NC and Log are the admin's.
func StartSecure(t testing.TB) *Node {
	t.Helper()
	trust, _, err := access.OpenOrCreate(context.Background(), filepath.Join(t.TempDir(), "creds"))
	if err != nil {
		t.Fatal(err)
	}
	return start(t, trust)
}

// Creds is the path of a credential for role (kind, and the host id or replica name), made on
// first use. The node must have been started with StartSecure.
func (n *Node) Creds(t testing.TB, kind, id string) string {
	t.Helper()
	if n.Trust == nil {
		t.Fatal("eventstest: Creds needs a node from StartSecure")
	}
	r, err := access.NewRole(kind, id)
	if err != nil {
		t.Fatal(err)
	}
	path, err := n.Trust.EnsureCreds(r)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func start(t testing.TB, trust *access.Trust) *Node {
	cfg := events.ServerConfig{DataDir: t.TempDir(), ServerName: "test"}
	var opts []nats.Option
	if trust != nil {
		auth := trust.Server()
		cfg.Auth = &auth
		path, err := trust.EnsureCreds(access.Role{Kind: access.Admin})
		if err != nil {
			t.Fatal(err)
		}
		if opts, err = access.ConnectOptions(path); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := events.StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	n := &Node{Server: srv, Trust: trust}
	nc, err := srv.Connect(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	// As the admin of a cluster does at its start: the stream and every bucket beside it.
	if n.Log, err = events.Setup(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := hostrpc.SetupTransfers(ctx, n.Log.JetStream(), 1); err != nil {
		t.Fatal(err)
	}
	if err := hostrpc.SetupSnapshots(ctx, n.Log.JetStream(), 1); err != nil {
		t.Fatal(err)
	}
	n.NC = nc
	return n
}

// Connect opens another in-process connection to the node and the event log on it, as a
// separate client (a projector, a host, a router) has. The connection is closed at cleanup;
// closing it earlier simulates that client's crash.
func (n *Node) Connect(t testing.TB) (*nats.Conn, *events.Log) {
	t.Helper()
	var opts []nats.Option
	if n.Trust != nil {
		var err error
		if opts, err = access.ConnectOptions(n.Creds(t, access.Admin, "")); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := n.Server.Connect(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	log, err := events.BindLog(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, log
}
