// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// NodeConfig configures RunNode: one embedded server and the event stream on it.
type NodeConfig struct {
	Server ServerConfig
	// Replicas of the event stream; 0 = 3 in a cluster, 1 standalone.
	Replicas int
	// SetupOptions are the options of the in-process connection that sets the cluster up (with
	// Server.Auth: the admin's credential).
	SetupOptions []nats.Option
	// Setup creates the stream and what goes beside it once JetStream is ready (default:
	// Setup, the stream and the KV buckets).
	Setup  func(ctx context.Context, nc *nats.Conn, replicas int) (*Log, error)
	Logger *slog.Logger
	// Metrics, if set, receives the server's metrics (see RegisterServerMetrics).
	Metrics prometheus.Registerer
}

// DefaultNodeConfig is a standalone node on the default client port 4222 of loopback; callers set
// Server.DataDir.
func DefaultNodeConfig() NodeConfig {
	return NodeConfig{Server: ServerConfig{Host: "127.0.0.1", Port: 4222}, Logger: slog.Default()}
}

// RunNode starts the server, creates or updates the event stream once JetStream is ready (in a
// cluster: once a quorum of nodes runs), and serves until ctx ends, then shuts the server down.
func RunNode(ctx context.Context, cfg NodeConfig) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	replicas := cfg.Replicas
	if replicas == 0 {
		replicas = 1
		if cfg.Server.ClusterName != "" {
			replicas = 3
		}
	}
	if cfg.Server.Logger == nil {
		cfg.Server.Logger = logger
	}
	srv, err := StartServer(cfg.Server)
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	if cfg.Metrics != nil {
		if err := RegisterServerMetrics(cfg.Metrics, srv); err != nil {
			return fmt.Errorf("nats node: metrics: %w", err)
		}
	}
	logger.Info("nats server listening", "url", srv.ClientURL(), "cluster", cfg.Server.ClusterName, "route_url", srv.ClusterURL())

	nc, err := srv.Connect(cfg.SetupOptions...)
	if err != nil {
		return err
	}
	defer nc.Close()
	if cfg.Server.ClusterName != "" {
		logger.Info("waiting for a JetStream quorum to create the event stream", "replicas", replicas, "routes", cfg.Server.Routes)
	}
	setup := cfg.Setup
	if setup == nil {
		setup = func(ctx context.Context, nc *nats.Conn, replicas int) (*Log, error) {
			return Setup(ctx, nc, WithReplicas(replicas))
		}
	}
	l, err := setup(ctx, nc, replicas)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("nats node: %w", err)
	}
	info := l.Stream().CachedInfo()
	logger.Info("event stream ready", "stream", StreamName, "replicas", info.Config.Replicas, "events", info.State.Msgs, "last_seq", info.State.LastSeq)
	<-ctx.Done()
	logger.Info("nats server shutting down")
	return nil
}
