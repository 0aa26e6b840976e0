// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/images"
	"github.com/waggle-dev/waggle/internal/cluster"
	"github.com/waggle-dev/waggle/internal/progress"
)

// defaultClusterDir is where `waggle cluster` keeps a cluster unless --dir says.
var defaultClusterDir = filepath.Join(defaultDataDir, "cluster")

func newClusterCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a whole cluster on this machine as separate processes (3 JetStream nodes, projectors, host agents, routers)",
		Long: "`waggle cluster up` starts, as separate processes with addresses of their own (127.0.0.11 and on),\n" +
			"a 3-node JetStream cluster, 2 projectors, 3 host agents and 2 routers, each with its own\n" +
			"credential, directory and log in --dir, and returns once the cluster serves. DIR/cluster.json\n" +
			"says where every process is; `waggle cluster down` stops them all.",
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultClusterDir, "the cluster's directory: credentials, each process's directory, logs/, cluster.json")
	cmd.AddCommand(newClusterUpCmd(&dir), newClusterDownCmd(&dir), newClusterLinkCmd(&dir, "cut"), newClusterLinkCmd(&dir, "heal"))
	return cmd
}

func newClusterUpCmd(dir *string) *cobra.Command {
	cfg := cluster.DefaultConfig()
	var initBin string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the cluster and wait until it serves; prints the MCP URLs and an API key",
		Long: "Builds the guest images when missing, then starts the processes stage by stage and returns once\n" +
			"the view shows every host agent live and every router answers /readyz. A process that does not\n" +
			"come up is named with the end of its log, and what was started is stopped. Starting again with\n" +
			"the same --dir keeps the history, the credentials and the API key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if cfg.Init, err = findInit(initBin, self); err != nil {
				return err
			}
			cfg.Dir, cfg.Waggle, cfg.Progress = *dir, self, progress.New(cmd.ErrOrStderr())
			c, err := cluster.New(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "waggle: checking guest images (built on first use; this takes a few minutes once)")
			bcfg := images.DefaultBuildConfig()
			bcfg.CacheDir, bcfg.Progress = cfg.CacheDir, cfg.Progress
			if err := images.Build(ctx, bcfg); err != nil {
				return err
			}
			if err := c.Start(ctx); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "waggle cluster is up in %s (every process: %s)\n", c.Dir(), filepath.Join(c.Dir(), cluster.StateFile))
			for _, u := range c.RouterURLs() {
				fmt.Fprintf(out, "MCP: %s\n", u)
			}
			fmt.Fprintf(out, "API key (Authorization: Bearer ...): %s\n", c.APIKey())
			fmt.Fprintf(out, "NATS: %s (credentials in %s; operator.creds for waggle events tail, audit, replay)\n",
				c.NATSURLs(), filepath.Join(c.Dir(), "creds"))
			fmt.Fprintf(out, "Logs: %s\n", filepath.Join(c.Dir(), "logs"))
			fmt.Fprintf(out, "Stop it with: waggle cluster down --dir %s\n", c.Dir())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.CacheDir, "cache-dir", cacheDir(defaultDataDir), "kernel and image cache the host agents share")
	f.StringVar(&initBin, "init", "", "static waggle-init binary (default: beside this binary or in PATH)")
	f.StringVar(&cfg.IP, "ip", cfg.IP, "first address of the processes; each takes the next (NATS nodes, host agents, routers)")
	f.IntVar(&cfg.NetnsHosts, "netns-hosts", 0, "run the last N host agents each in a network namespace of its own, so that waggle cluster cut can cut them off (root; the cluster then uses a private /24 on a bridge)")
	f.StringVar(&cfg.Drain, "drain", cfg.Drain, "what host agents do with their VMs on cluster down: destroy them, or keep them for the next cluster up to adopt")
	f.StringVar(&cfg.Accel, "accel", cfg.Accel, "the host agents' acceleration: auto, kvm or tcg")
	f.StringArrayVar(&cfg.HostAgentArgs, "hostagent-flag", nil, "a flag for every host agent, e.g. --hostagent-flag=--capacity-memory=4096 (repeatable)")
	f.StringArrayVar(&cfg.RouterArgs, "router-flag", nil, "a flag for every router, e.g. --router-flag=--max-envs-per-tenant=50 (repeatable)")
	return cmd
}

func newClusterDownCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the cluster cleanly: routers, host agents (they drain), projectors, NATS; logs and data stay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cluster.Open(*dir, progress.New(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			if err := c.Down(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "waggle cluster in %s is down; logs in %s; `waggle cluster up --dir %s` starts it again\n",
				c.Dir(), filepath.Join(c.Dir(), "logs"), c.Dir())
			return nil
		},
	}
}

// newClusterLinkCmd is `waggle cluster cut` or `heal`: the partition helper.
func newClusterLinkCmd(dir *string, verb string) *cobra.Command {
	short := "Cut a host agent off the network (it must run in a namespace of its own: cluster up --netns-hosts)"
	if verb == "heal" {
		short = "Connect a host agent that `waggle cluster cut` cut off again"
	}
	return &cobra.Command{
		Use:   verb + " HOST",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cluster.Open(*dir, nil)
			if err != nil {
				return err
			}
			op, done := c.Cut, "cut off the network"
			if verb == "heal" {
				op, done = c.Heal, "connected again"
			}
			if err := op(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], done)
			return nil
		},
	}
}
