// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/mcp"
	"github.com/waggle-dev/waggle/projector"
	"github.com/waggle-dev/waggle/router"
)

func newRouterCmd() *cobra.Command {
	cfg := router.DefaultConfig()
	var natsF *natsFlags
	cmd := &cobra.Command{
		Use:   "router",
		Short: "Run a stateless MCP router (Streamable HTTP at /mcp, plus /healthz, /readyz, /metrics)",
		Long: "Run a stateless MCP router. Callers authenticate with a bearer API key (see `waggle token`);\n" +
			"any number of routers may serve the same cluster, and any of them serves any call.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg.Logger = slog.Default()
			if err := cfg.Validate(); err != nil {
				return err
			}
			cfg.Metrics = newRegistry()
			nc, log, err := natsF.bindLog(ctx, "waggle-router-"+cfg.ID, routerRole, events.WithMetrics(cfg.Metrics))
			if err != nil {
				return err
			}
			defer nc.Close()
			view, err := projector.NewReader(log.JetStream())
			if err != nil {
				return err
			}
			deps := router.Deps{NC: nc, Log: log, View: view, MCP: mcp.Handler}
			if !cfg.NoAuth {
				if deps.Tokens, err = router.OpenTokens(ctx, log.JetStream()); err != nil {
					return err
				}
			}
			r, err := router.New(cfg, deps)
			if err != nil {
				return err
			}
			return r.Run(ctx)
		},
	}
	natsF = newNATSFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP listen address")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate to serve HTTPS with (with --tls-key)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	f.BoolVar(&cfg.NoAuth, "no-auth", false, "serve every caller as tenant \""+router.DefaultTenant+"\" without an API key (loopback only)")
	f.StringVar(&cfg.ID, "id", cfg.ID, "name of this router in logs and metrics")
	f.StringSliceVar(&cfg.AllowedOrigins, "allowed-origins", nil, "web origins (scheme://host:port) besides the router's own whose pages may call /mcp, comma separated")
	f.DurationVar(&cfg.BootTimeout, "boot-timeout", cfg.BootTimeout, "how long create_environment waits for a host to start an environment")
	f.IntVar(&cfg.MaxEnvsPerTenant, "max-envs-per-tenant", cfg.MaxEnvsPerTenant, "live environments a tenant may have (0 = unlimited)")
	f.IntVar(&cfg.MaxCallsPerTenant, "max-calls-per-tenant", cfg.MaxCallsPerTenant, "tool calls one tenant may have in progress on this router at once; more are refused as busy (0 = unlimited)")
	f.IntVar(&cfg.MaxMemoryMiBPerTenant, "max-memory-per-tenant", cfg.MaxMemoryMiBPerTenant, "MiB of memory a tenant's live environments may use (0 = unlimited)")
	f.IntVar(&cfg.Limits.MaxFileBytes, "max-file-bytes", cfg.Limits.MaxFileBytes, "largest file write_file and read_file move (larger than a NATS message goes through the object store)")
	f.IntVar(&cfg.MaxMemoryMiB, "max-env-memory", cfg.MaxMemoryMiB, "largest memory_mib one environment may ask for")
	f.IntVar(&cfg.MaxCPUs, "max-env-cpus", cfg.MaxCPUs, "most cpus one environment may ask for")
	f.DurationVar(&cfg.MaxTTL, "max-env-timeout", cfg.MaxTTL, "longest idle timeout (timeout_minutes) an environment may ask for")
	f.DurationVar(&cfg.DestroyTimeout, "destroy-timeout", 30*time.Second, "how long destroy_environment waits for the host")
	f.DurationVar(&cfg.StuckAfter, "stuck-after", cfg.StuckAfter, "how long an environment may stay requested or placed (its router died, its host never took it) before a router ends it; more than --boot-timeout")
	return cmd
}
