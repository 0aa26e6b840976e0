// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/router"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API keys (stored hashed in the waggle_tokens bucket)",
	}
	natsF := newNATSFlags(cmd)
	// withTokens is a RunE that opens the key store and runs fn with it.
	withTokens := func(fn func(cmd *cobra.Command, args []string, toks *router.Tokens) error) func(*cobra.Command, []string) error {
		return natsF.withLog("waggle-token", adminRole, func(cmd *cobra.Command, args []string, l *events.Log) error {
			toks, err := router.OpenTokens(cmd.Context(), l.JetStream())
			if err != nil {
				return err
			}
			return fn(cmd, args, toks)
		})
	}

	var tenant, name string
	create := &cobra.Command{
		Use:   "create --tenant T [--name N]",
		Short: "Create an API key for a tenant; prints only the key",
		Args:  cobra.NoArgs,
		RunE: withTokens(func(cmd *cobra.Command, _ []string, toks *router.Tokens) error {
			key, _, err := toks.Create(cmd.Context(), tenant, name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			return nil
		}),
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant the key acts for (required)")
	create.Flags().StringVar(&name, "name", "", "a note on what the key is for")
	_ = create.MarkFlagRequired("tenant")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List API keys (ids, tenants, names; never the keys)",
		Args:  cobra.NoArgs,
		RunE: withTokens(func(cmd *cobra.Command, _ []string, toks *router.Tokens) error {
			list, err := toks.List(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTENANT\tNAME\tCREATED\tREVOKED")
			for _, t := range list {
				revoked := "-"
				if !t.Revoked.IsZero() {
					revoked = t.Revoked.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Tenant, t.Name, t.Created.Format(time.RFC3339), revoked)
			}
			return w.Flush()
		}),
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: withTokens(func(cmd *cobra.Command, args []string, toks *router.Tokens) error {
			t, err := toks.Revoke(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "revoked key %s of tenant %s\n", t.ID, t.Tenant)
			return nil
		}),
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}
