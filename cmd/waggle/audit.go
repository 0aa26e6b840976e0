// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/projector/audit"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify the log's hash chains and digests; print who did what"}
	natsF := newNATSFlags(cmd)

	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk every aggregate's hash chain and check every digest; exit 1 naming the first problem",
		Args:  cobra.NoArgs,
		RunE: natsF.withLog("waggle-audit", operatorRole, func(cmd *cobra.Command, _ []string, l *events.Log) error {
			rep, err := audit.Verify(cmd.Context(), l)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "%d events in %d aggregates up to seq %d; %d digests cover through seq %d\n",
					rep.Events, rep.Aggregates, rep.LastSeq, rep.Digests, rep.Covered)
				for _, p := range rep.Problems {
					fmt.Fprintln(out, p)
				}
			}
			if !rep.OK() {
				return fmt.Errorf("audit verify: %d problems; first: %s", len(rep.Problems), rep.Problems[0])
			}
			if !asJSON {
				fmt.Fprintln(out, "ok")
			}
			return nil
		}),
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")

	var env, principal, since string
	var logJSON bool
	logCmd := &cobra.Command{
		Use:   "log [--env ID] [--principal P] [--since TIME|SEQ]",
		Short: "Print who did what, when: creates, execs (code hash, exit code), file writes and reads, destroys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			from := events.Position{}
			if since != "" {
				start, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				from = start.pos
			}
			filters := []string{"waggle.env.>"}
			if env != "" {
				if err := events.ValidID(env); err != nil {
					return err
				}
				filters = []string{events.EnvAggregate("*", env)}
			}
			nc, l, err := natsF.bindTool(ctx, "waggle-audit", operatorRole)
			if err != nil {
				return err
			}
			defer nc.Close()
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !logJSON {
				fmt.Fprintln(tw, "SEQ\tSTORED\tPRINCIPAL\tENV\tACTION\tDETAIL")
			}
			var werr error
			err = l.Replay(ctx, from, filters, func(ev *events.Event) error {
				r, ok := audit.Describe(ev)
				if !ok || (principal != "" && r.Principal != principal) {
					return nil
				}
				if logJSON {
					return writeJSONLine(out, r)
				}
				_, werr = fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Stored.UTC().Format(time.RFC3339Nano), r.Principal, r.Env, r.Action, r.Detail)
				return werr
			})
			return errors.Join(err, tw.Flush())
		},
	}
	logCmd.Flags().StringVar(&env, "env", "", "only this environment")
	logCmd.Flags().StringVar(&principal, "principal", "", "only actions of this principal (tenant/key id, host:<id>, system)")
	logCmd.Flags().StringVar(&since, "since", "", "only events from TIME (RFC 3339, a date or a duration ago) or from a stream sequence")
	logCmd.Flags().BoolVar(&logJSON, "json", false, "print one JSON record per line")
	cmd.AddCommand(verify, logCmd)
	return cmd
}
