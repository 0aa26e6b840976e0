// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/projector"
)

func newProjectorCmd() *cobra.Command {
	cfg := projector.DefaultConfig()
	if host, err := os.Hostname(); err == nil {
		cfg.Name = host
	}
	cmd := &cobra.Command{
		Use:   "projector",
		Short: "Fold the event log into the view (KV buckets waggle_envs, waggle_hosts); rebuild it; show its lag",
		Args:  cobra.NoArgs,
	}
	natsF := newNATSFlags(cmd)
	var metricsListen string
	run := func(cmd *cobra.Command, _ []string) error {
		role, err := access.NewRole(access.Projector, cfg.Name)
		if err != nil {
			return err
		}
		if creds := natsF.credsFor(role); creds != "" {
			if cfg.Consumer, err = credsDurable(creds, role); err != nil {
				return err
			}
		}
		reg := newRegistry()
		nc, l, err := natsF.bindLog(cmd.Context(), "waggle-projector-"+cfg.Name, role, events.WithMetrics(reg))
		if err != nil {
			return err
		}
		defer nc.Close()
		cfg.Logger, cfg.Metrics = slog.Default(), reg
		proj, err := projector.New(cfg, l)
		if err != nil {
			return err
		}
		return serveMetricsWhile(cmd.Context(), metricsListen, reg, cfg.Logger, proj.Run)
	}
	cmd.RunE = run
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Run a projector replica until interrupted (the default)",
		Args:  cobra.NoArgs,
		RunE:  run,
	}
	for _, c := range []*cobra.Command{cmd, runCmd} {
		f := c.Flags()
		f.StringVar(&cfg.Name, "name", cfg.Name, "replica name (its durable consumer); replicas running at once need distinct names")
		f.IntVar(&cfg.DigestEvery, "digest-every", cfg.DigestEvery, "append an audit digest every N events (0: none from this replica)")
		f.DurationVar(&cfg.DigestInterval, "digest-interval", cfg.DigestInterval, "append an audit digest at least this often while events come")
		addMetricsFlag(f, &metricsListen)
	}

	var asJSON bool
	rebuild := &cobra.Command{
		Use:   "rebuild",
		Short: "Fold the whole log into fresh buckets, then swap them in; prints the new view's hash",
		Args:  cobra.NoArgs,
		RunE: natsF.withLog("waggle-projector-rebuild", adminRole, func(cmd *cobra.Command, _ []string, l *events.Log) error {
			res, err := projector.Rebuild(cmd.Context(), l)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "generation %d (%s, %s) at seq %d: %d environments, %d hosts, %d events refused, in %s\nview hash %s\n",
				res.Generation.Gen, res.Generation.Envs, res.Generation.Hosts, res.Seq, res.Envs, res.Hosts, res.Refused, res.Took, res.Hash)
			return nil
		}),
	}
	rebuild.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the live generation, the applied sequence, the lag and every replica's consumer",
		Args:  cobra.NoArgs,
		RunE: natsF.withLog("waggle-projector-status", adminRole, func(cmd *cobra.Command, _ []string, l *events.Log) error {
			st, err := projector.ReadStatus(cmd.Context(), l)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "generation %d (%s, %s)\napplied seq %d, stream last seq %d, lag %d\n",
				st.Generation.Gen, st.Generation.Envs, st.Generation.Hosts, st.Applied, st.LastSeq, st.Lag)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REPLICA\tDELIVERED\tACK FLOOR\tACK PENDING\tPENDING\tACTIVE")
			for _, r := range st.Replicas {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%v\n", r.Name, r.Delivered, r.AckFloor, r.AckPending, r.Pending, r.Active)
			}
			return tw.Flush()
		}),
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(runCmd, rebuild, status)
	return cmd
}
