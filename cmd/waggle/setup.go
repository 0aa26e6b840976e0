// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// setupCluster is the admin's part of a cluster's start, on a connection with the admin
// credential: the event stream, the buckets beside it and the transfer and snapshot object stores, each
// with replicas copies (0: keep an existing stream's count, 1 for a new one).
func setupCluster(ctx context.Context, nc *nats.Conn, replicas int) (*events.Log, error) {
	var opts []events.LogOption
	if replicas > 0 {
		opts = append(opts, events.WithReplicas(replicas))
	}
	l, err := events.Setup(ctx, nc, opts...)
	if err != nil {
		return nil, err
	}
	// Every node of a cluster runs this at its start, at once: an attempt that times out while
	// the others create the same store is tried again.
	err = events.RetryTransient(ctx, func(ctx context.Context) error {
		replicas := l.Stream().CachedInfo().Config.Replicas
		return errors.Join(hostrpc.SetupTransfers(ctx, l.JetStream(), replicas),
			hostrpc.SetupSnapshots(ctx, l.JetStream(), replicas))
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func newSetupCmd() *cobra.Command {
	var replicas int
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create the event stream and the buckets on a NATS cluster (admin credential); safe to run again",
		Long: "Create the event stream " + events.StreamName + " (audit-grade: no delete, purge or age limit),\n" +
			"the KV buckets and the transfer and snapshot object stores, or bring their settings back. `waggle up` and\n" +
			"`waggle nats` do this at every start; run it against a stock nats-server cluster.",
		Args: cobra.NoArgs,
	}
	natsF := newNATSFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		nc, err := natsF.connect("waggle-setup", adminRole)
		if err != nil {
			return err
		}
		defer nc.Close()
		l, err := setupCluster(cmd.Context(), nc, replicas)
		if err != nil {
			return err
		}
		info := l.Stream().CachedInfo()
		fmt.Fprintf(cmd.OutOrStdout(), "stream %s ready: %d replicas, %d events\n", events.StreamName, info.Config.Replicas, info.State.Msgs)
		return nil
	}
	cmd.Flags().IntVar(&replicas, "replicas", 0, "replicas of the stream and buckets (0: keep the stream's, 1 for a new one; 3 in a 3-node cluster)")
	return cmd
}
