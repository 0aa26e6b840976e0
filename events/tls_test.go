// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/internal/testtls"
)

// TestClusterOverTLS: a 3-node cluster whose routes and clients use TLS replicates the stream;
// a client that does not trust the CA cannot connect.
func TestClusterOverTLS(t *testing.T) {
	f := testtls.New(t)
	nodes := startClusterTLS(t, 3, &TLSFiles{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA})
	nc, err := nats.Connect(clientURLs(nodes), nats.RootCAs(f.CA))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l := openTestLog(t, nc, WithReplicas(3))
	if _, err := l.Append(testCtx(t), envEvent(t, "h1", "e1", EnvRequested, nil), Head{}); err != nil {
		t.Fatal(err)
	}
	if got := l.Stream().CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("stream has %d replicas over TLS routes, want 3", got)
	}
	if bad, err := nats.Connect(nodes[0].ClientURL()); err == nil {
		bad.Close()
		t.Fatal("a client that does not trust the CA connected")
	}
}
