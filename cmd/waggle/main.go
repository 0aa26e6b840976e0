// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Command waggle is the one binary of a waggle cluster: it runs every role (up, nats, router,
// hostagent, projector) and the operator and auditor tools (events, replay, audit, env, hosts,
// images, vm, token, bench).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run())
}

// run executes the command line and returns the process exit code.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCmd().ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code := exitCode(err)
	if code == 1 {
		fmt.Fprintln(os.Stderr, "waggle:", err)
	}
	return code
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "waggle",
		Short:         "Disposable microVM environments for AI agents, over MCP, on a cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd)
		},
	}
	root.AddCommand(
		newVersionCmd(),
		newImagesCmd(),
		newTokenCmd(),
		newRouterCmd(),
		newVMCmd(),
		newProjectorCmd(), newReplayCmd(), newEnvCmd(), newHostsCmd(), newAuditCmd(),
		newNATSCmd(), newEventsCmd(), newCredsCmd(), newSetupCmd(),
		newHostAgentCmd(),
		newUpCmd(), newClusterCmd(),
		newBenchCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "waggle", version)
		},
	}
}
