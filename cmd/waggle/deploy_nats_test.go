// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
)

// TestStockNATSServerConfig starts a stock nats-server from deploy/nats/nats-1.conf (its
// cluster part dropped, ports and store moved into a temporary directory) with the trust block
// `waggle creds nats-config` prints: `waggle setup` works with the admin credential, a client
// without credentials is refused, and a router may not delete the stream.
func TestStockNATSServerConfig(t *testing.T) {
	dir := t.TempDir()
	creds, trust := natsTrust(t, dir)
	raw, err := os.ReadFile("../../deploy/nats/nats-1.conf")
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok := strings.Cut(string(raw), "cluster {")
	_, after, ok2 := strings.Cut(rest, "# TLS for clients")
	if !ok || !ok2 {
		t.Fatal("deploy/nats/nats-1.conf lost its cluster block or its client TLS note")
	}
	conf := before + "# TLS for clients" + after
	conf = strings.NewReplacer("0.0.0.0:4222", "127.0.0.1:-1", "/var/lib/waggle/nats", filepath.Join(dir, "js"),
		"sync_interval: always", "").Replace(conf)
	// The trust block keeps account JWTs in ./jwt beside the server's working directory.
	trust = strings.Replace(trust, `dir: "./jwt"`, `dir: "`+filepath.Join(dir, "jwt")+`"`, 1)
	writeFile(t, filepath.Join(dir, "trust.conf"), trust)
	path := filepath.Join(dir, "nats.conf")
	writeFile(t, path, conf)
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server cannot read deploy/nats/nats-1.conf with the trust block: %v", err)
	}
	url := startNATSServer(t, opts).ClientURL()
	if out, err := waggle(t, "setup", "--nats-url", url, "--nats-creds", filepath.Join(creds, "admin.creds")); err != nil {
		t.Fatalf("waggle setup: %v: %s", err, out)
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	ropts, err := access.ConnectOptions(filepath.Join(creds, "router.creds"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("$JS.API.STREAM.DELETE."+events.StreamName, nil, 500*time.Millisecond); err == nil {
		t.Fatal("the router deleted the event stream")
	}
}

// natsTrust makes a cluster's trust in dir/creds with `waggle creds init` and returns that
// directory and the trust block for stock nats-server (`waggle creds nats-config`).
func natsTrust(t *testing.T, dir string) (string, string) {
	t.Helper()
	creds := filepath.Join(dir, "creds")
	if out, err := waggle(t, "creds", "init", "--dir", creds); err != nil {
		t.Fatalf("creds init: %v: %s", err, out)
	}
	trust, err := waggle(t, "creds", "nats-config", "--dir", creds)
	if err != nil {
		t.Fatalf("nats-config: %v", err)
	}
	return creds, trust
}

// startNATSServer starts a nats-server with opts (read from a configuration file) until the
// test ends.
func startNATSServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", opts.ServerName)
	}
	return ns
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
