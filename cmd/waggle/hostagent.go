// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
	"github.com/waggle-dev/waggle/internal/progress"
)

// hostAgentOptions are the flags of `waggle hostagent` that are not fields of hostagent.Config.
type hostAgentOptions struct {
	gossipKey, cacheDir, logLevel string
	metricsListen                 string
	insecureGossip                bool
	vm                            vmOptions
	packages                      packageOptions
}

func newHostAgentCmd() *cobra.Command {
	cfg := hostagent.DefaultConfig()
	var o hostAgentOptions
	var natsF *natsFlags
	cmd := &cobra.Command{
		Use:   "hostagent --host-id ID [flags]",
		Short: "Run the host agent of this VM host: placements, microVMs, exec/file RPC, membership",
		Long: "Consumes the placements of this host from the event log, boots and stops microVMs, serves\n" +
			"exec and file calls on waggle.rpc.<host-id>.*, stops idle environments, and gossips with the\n" +
			"other host agents to report failed hosts. Ctrl-C drains (see --drain) and leaves cleanly.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHostAgent(cmd, cfg, o, natsF)
		},
	}
	natsF = newNATSFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.HostID, "host-id", "", "this host's id (letters, digits, '-', '_'); required")
	f.StringVar(&cfg.DataDir, "data-dir", defaultDataDir, "data directory: VM state in vms/, warm pool claims in claims/")
	f.StringVar(&o.cacheDir, "cache-dir", "", "kernel and image cache (default: cache/ in --data-dir)")
	f.StringVar(&cfg.Membership.BindAddr, "bind", "127.0.0.1:7946", "gossip address host:port (UDP and TCP; port 0 picks one)")
	f.StringSliceVar(&cfg.Membership.Join, "join", nil, "gossip addresses of other host agents, comma separated")
	f.StringVar(&o.gossipKey, "gossip-key", "", "base64 AES key (16, 24 or 32 bytes) shared by all host agents (required unless --insecure-gossip)")
	f.BoolVar(&o.insecureGossip, "insecure-gossip", false, "gossip without encryption or authentication (anyone who reaches --bind can forge membership)")
	f.IntVar(&cfg.Capacity.MemoryMiB, "capacity-memory", cfg.Capacity.MemoryMiB,
		"memory offered to environments, MiB; the default is this machine's less a reserve for its own use")
	f.IntVar(&cfg.Capacity.CPUs, "capacity-cpus", cfg.Capacity.CPUs,
		fmt.Sprintf("virtual CPUs offered to environments; the default is this machine's CPUs × %d", hostagent.CPUOvercommit))
	f.IntVar(&cfg.Capacity.MaxEnvironments, "max-environments", cfg.Capacity.MaxEnvironments, "most VMs at once (warm pool included)")
	f.IntVar(&cfg.DefaultResources.MemoryMiB, "default-memory", cfg.DefaultResources.MemoryMiB, "memory of an environment that asks for none, MiB")
	f.IntVar(&cfg.DefaultResources.CPUs, "default-cpus", cfg.DefaultResources.CPUs, "CPUs of an environment that asks for none")
	f.DurationVar(&cfg.DefaultTTL, "default-ttl", cfg.DefaultTTL, "idle timeout of an environment that asks for none")
	f.IntVar(&cfg.Limits.MaxFileBytes, "max-file-bytes", cfg.Limits.MaxFileBytes, "largest file a file call moves")
	f.IntVar(&cfg.MaxConcurrentRPCs, "max-calls", cfg.MaxConcurrentRPCs, "exec, file and process calls in progress on this host at once; more are refused as busy")
	f.IntVar(&cfg.MaxRPCsPerEnv, "max-calls-per-env", cfg.MaxRPCsPerEnv, "calls in progress for one environment at once; more are refused as busy")
	f.IntVar(&cfg.MaxConcurrentBoots, "max-concurrent-boots", cfg.MaxConcurrentBoots, "VM boots in progress at once; more placements queue")
	f.IntVar(&cfg.WarmPool, "warm-pool", 0, "pre-booted VMs kept per runtime (0: none)")
	f.StringSliceVar(&cfg.WarmRuntimes, "warm-runtimes", cfg.WarmRuntimes, "runtimes the warm pool keeps")
	f.StringVar(&cfg.Drain, "drain", cfg.Drain, "on stop: destroy the environments, or keep their VMs for the next start")
	addSnapshotStoreFlag(f, &cfg.SnapshotStore)
	o.vm.addFlags(f, vnet.EgressNone)
	o.packages.addFlags(f)
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	addMetricsFlag(f, &o.metricsListen)
	_ = cmd.MarkFlagRequired("host-id")
	return cmd
}

func runHostAgent(cmd *cobra.Command, cfg hostagent.Config, o hostAgentOptions, natsF *natsFlags) error {
	ctx := cmd.Context()
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel)
	if err != nil {
		return err
	}
	logger = logger.With("role", "hostagent")
	cfg.Logger = logger
	switch {
	case o.gossipKey != "":
		key, err := base64.StdEncoding.DecodeString(o.gossipKey)
		if err != nil {
			return fmt.Errorf("--gossip-key: %w", err)
		}
		cfg.Membership.SecretKey = key
	case !o.insecureGossip:
		return errors.New("--gossip-key is required: a forged gossip message can declare a live host dead; give every host agent the same key (e.g. `head -c 32 /dev/urandom | base64`), or --insecure-gossip to go without")
	}
	role, err := access.NewRole(access.HostAgent, cfg.HostID)
	if err != nil {
		return err
	}
	if creds := natsF.credsFor(role); creds != "" {
		if cfg.Consumer, err = credsDurable(creds, role); err != nil {
			return err
		}
	}
	if o.cacheDir == "" {
		o.cacheDir = cacheDir(cfg.DataDir)
	}
	if err := o.packages.apply(&cfg, cfg.DataDir); err != nil {
		return err
	}
	machines, err := newVMMachines(ctx, cfg.DataDir, o, logger, progress.New(cmd.ErrOrStderr()), "vm")
	if err != nil {
		return err
	}
	reg := newRegistry()
	cfg.Metrics = reg
	nc, log, err := natsF.bindLog(ctx, "waggle hostagent "+cfg.HostID, role, events.WithMetrics(reg))
	if err != nil {
		return err
	}
	defer nc.Close()
	agent, err := hostagent.New(cfg, log, nc, machines)
	if err != nil {
		return err
	}
	return serveMetricsWhile(ctx, o.metricsListen, reg, logger, agent.Run)
}

// addSnapshotStoreFlag adds --snapshot-store, where paused environments' snapshots live.
func addSnapshotStoreFlag(f *pflag.FlagSet, store *string) {
	f.StringVar(store, "snapshot-store", hostagent.SnapshotStoreLocal,
		"where a paused environment's snapshot lives: local (this host), or objects (also the JetStream object store: resume_environment restores it on another host when this one failed)")
}
