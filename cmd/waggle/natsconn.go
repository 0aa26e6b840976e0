// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
)

// natsURLFlag adds the persistent --nats-url flag to cmd.
func natsURLFlag(cmd *cobra.Command) *string {
	url := new(string)
	cmd.PersistentFlags().StringVar(url, "nats-url", nats.DefaultURL, "NATS server URL")
	return url
}

// connectEventLog connects to NATS at url as client (reconnecting for ever) and opens the event
// log on that connection; the caller closes the connection.
func connectEventLog(ctx context.Context, url, client string) (*nats.Conn, *events.Log, error) {
	nc, err := nats.Connect(url, nats.Name(client), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	l, err := events.OpenLog(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, l, nil
}

// openEventLog connects to NATS at url and opens the event log; close ends the connection.
func openEventLog(ctx context.Context, url, client string) (*events.Log, func(), error) {
	nc, l, err := connectEventLog(ctx, url, client)
	if err != nil {
		return nil, nil, err
	}
	return l, nc.Close, nil
}

// withEventLog is a command's RunE that opens the event log at *natsURL as client, runs fn
// with it and closes the connection.
func withEventLog(natsURL *string, client string, fn func(cmd *cobra.Command, args []string, l *events.Log) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		l, closeNC, err := openEventLog(cmd.Context(), *natsURL, client)
		if err != nil {
			return err
		}
		defer closeNC()
		return fn(cmd, args, l)
	}
}
