// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
)

// defaultClusterPort is the route port a cluster node listens on unless --cluster-listen says.
const defaultClusterPort = 6222

func newNATSCmd() *cobra.Command {
	cfg := events.DefaultNodeConfig()
	cfg.Server.ServerName, _ = os.Hostname()
	var dataDir, listen, clusterListen, creds, metricsListen string
	var routes []string
	var tlsFiles events.TLSFiles
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "Run one embedded NATS JetStream node holding the event log, until Ctrl-C",
		Long: "Run one embedded NATS JetStream node with its file store in DATA-DIR/jetstream, and create\n" +
			"the event stream " + events.StreamName + " once JetStream is ready. Standalone without cluster\n" +
			"flags (stream R1); with --cluster-name, --cluster-listen and --routes (every node's route URL,\n" +
			"its own allowed) it is one node of a JetStream cluster (stream R3 once a quorum runs).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			cfg.Server.DataDir = dataDir
			if cfg.Server.Host, cfg.Server.Port, err = splitHostPort("--listen", listen); err != nil {
				return err
			}
			cfg.Server.Routes = routes
			if cfg.Server.ClusterName != "" {
				if clusterListen == "" {
					clusterListen = net.JoinHostPort(cfg.Server.Host, strconv.Itoa(defaultClusterPort))
				}
				if cfg.Server.ClusterHost, cfg.Server.ClusterPort, err = splitHostPort("--cluster-listen", clusterListen); err != nil {
					return err
				}
			} else if clusterListen != "" || len(routes) > 0 {
				return fmt.Errorf("--cluster-listen and --routes need --cluster-name")
			}
			if creds == "" {
				creds = credsDir(dataDir)
			}
			// A standalone node makes its cluster's trust on first start; the nodes of a
			// cluster share one, made once (`waggle creds init`) and copied to each.
			trust, err := openTrust(cmd.Context(), cmd.ErrOrStderr(), creds, cfg.Server.ClusterName == "",
				adminRole, operatorRole, routerRole, access.Role{Kind: access.Projector, ID: access.DefaultProjector})
			if err != nil {
				return err
			}
			auth := trust.Server()
			cfg.Server.Auth = &auth
			if cfg.SetupOptions, err = trustOptions(trust, adminRole); err != nil {
				return err
			}
			cfg.Setup = setupCluster
			if tlsFiles.CertFile != "" || tlsFiles.KeyFile != "" {
				if tlsFiles.CertFile == "" || tlsFiles.KeyFile == "" {
					return errors.New("--tls-cert and --tls-key go together")
				}
				cfg.Server.TLS = &tlsFiles
			}
			cfg.Logger = slog.Default()
			reg := newRegistry()
			cfg.Metrics = reg
			return serveMetricsWhile(cmd.Context(), metricsListen, reg, cfg.Logger, func(ctx context.Context) error {
				return events.RunNode(ctx, cfg)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", defaultDataDir, "data directory; the JetStream file store is its jetstream/")
	f.StringVar(&creds, "creds-dir", "", "the cluster's credentials directory (default <data-dir>/creds; a standalone node creates it on first start)")
	f.StringVar(&tlsFiles.CertFile, "tls-cert", "", "PEM certificate for the client and route listeners (TLS)")
	f.StringVar(&tlsFiles.KeyFile, "tls-key", "", "PEM key of --tls-cert")
	f.StringVar(&tlsFiles.CAFile, "tls-ca", "", "PEM CA bundle that signed the other nodes' route certificates")
	f.StringVar(&listen, "listen", net.JoinHostPort(cfg.Server.Host, strconv.Itoa(cfg.Server.Port)), "client listen address HOST:PORT (port 0 = any free port)")
	f.StringVar(&cfg.Server.ServerName, "server-name", cfg.Server.ServerName, "name of this node, unique in the cluster")
	f.StringVar(&cfg.Server.ClusterName, "cluster-name", "", "JetStream cluster name (empty = standalone)")
	f.StringVar(&clusterListen, "cluster-listen", "", fmt.Sprintf("route listen address HOST:PORT (default: the --listen host, port %d)", defaultClusterPort))
	f.StringSliceVar(&routes, "routes", nil, "route URLs of every cluster node, comma-separated (nats://host:port,...)")
	f.BoolVar(&cfg.Server.SyncAlways, "sync", false, "fsync every write (survives power loss standalone; about 10x fewer appends/s)")
	f.IntVar(&cfg.Replicas, "replicas", 0, "replicas of the event stream (default 3 in a cluster, 1 standalone)")
	addMetricsFlag(f, &metricsListen)
	return cmd
}

// splitHostPort parses a HOST:PORT flag value.
func splitHostPort(flag, hostPort string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", flag, hostPort, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: port must be 0-65535", flag, hostPort)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}
