// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/projector"
)

func newEnvCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "env", Short: "Query environments in the view"}
	natsF := newNATSFlags(cmd)

	var tenant, host string
	var asJSON, withHash bool
	ls := &cobra.Command{
		Use:   "ls [--tenant T] [--host H] [--json] [--hash]",
		Short: "List environments (and the sequence the view reflects); --hash prints the whole view's hash",
		Args:  cobra.NoArgs,
		RunE: withView(natsF, "waggle-env", func(cmd *cobra.Command, _ []string, _ *events.Log, r *projector.Reader) error {
			ctx := cmd.Context()
			view, err := r.View(ctx)
			if err != nil {
				return err
			}
			envs := []*projector.Env{}
			for _, e := range view.EnvList() {
				if (tenant == "" || e.Owner == tenant) && (host == "" || e.Host == host) {
					envs = append(envs, e)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				res := map[string]any{"seq": view.Seq, "envs": envs}
				if withHash {
					res["hash"] = view.Hash()
				}
				return writeJSON(out, res)
			}
			if err := printEnvs(out, envs); err != nil {
				return err
			}
			fmt.Fprintf(out, "view at seq %d\n", view.Seq)
			if withHash {
				fmt.Fprintf(out, "view hash %s\n", view.Hash())
			}
			return nil
		}),
	}
	ls.Flags().StringVar(&tenant, "tenant", "", "only environments of this tenant")
	ls.Flags().StringVar(&host, "host", "", "only environments on this host")
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	ls.Flags().BoolVar(&withHash, "hash", false, "print the hash of the whole view (compare with waggle replay)")

	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show one environment and its full event history",
		Args:  cobra.ExactArgs(1),
		RunE: withView(natsF, "waggle-env", func(cmd *cobra.Command, args []string, l *events.Log, r *projector.Reader) error {
			ctx := cmd.Context()
			id := args[0]
			if err := events.ValidID(id); err != nil {
				return err
			}
			env, err := r.Env(ctx, id)
			if err != nil {
				return err
			}
			history, _, err := l.Load(ctx, events.EnvAggregate(env.Host, id))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, map[string]any{"env": env, "history": history})
			}
			printEnv(out, env)
			fmt.Fprintln(out, "\nhistory:")
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tSTORED\tTYPE\tPRINCIPAL\tDATA")
			for _, ev := range history {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Stored.UTC().Format(time.RFC3339Nano), ev.Type, ev.Principal, ev.Data)
			}
			return tw.Flush()
		}),
	}
	get.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(ls, get)
	return cmd
}

func newHostsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "hosts", Short: "Query hosts in the view"}
	natsF := newNATSFlags(cmd)
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List hosts: state, capacity, allocation",
		Args:  cobra.NoArgs,
		RunE: withView(natsF, "waggle-hosts", func(cmd *cobra.Command, _ []string, _ *events.Log, r *projector.Reader) error {
			ctx := cmd.Context()
			seq, err := r.Freshness(ctx)
			if err != nil {
				return err
			}
			hosts, err := r.Hosts(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, map[string]any{"seq": seq, "hosts": hosts})
			}
			if err := printHosts(out, hosts); err != nil {
				return err
			}
			fmt.Fprintf(out, "view at seq %d\n", seq)
			return nil
		}),
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(ls)
	return cmd
}

// withView is a command's RunE that opens the event log and the view's reader, and runs fn with
// both.
func withView(natsF *natsFlags, client string, fn func(cmd *cobra.Command, args []string, l *events.Log, r *projector.Reader) error) func(*cobra.Command, []string) error {
	return natsF.withLog(client, operatorRole, func(cmd *cobra.Command, args []string, l *events.Log) error {
		r, err := projector.NewReader(l.JetStream())
		if err != nil {
			return err
		}
		return fn(cmd, args, l, r)
	})
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func printEnvs(w io.Writer, envs []*projector.Env) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tOWNER\tRUNTIME\tHOST\tSTATE\tCPUS\tMEM MiB\tCREATED\tLAST ACTIVE\tEXPIRES\tSEQ")
	for _, e := range envs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\n", e.ID, e.Name, e.Owner, e.Runtime, e.Host, e.State,
			e.Resources.CPUs, e.Resources.MemoryMiB, fmtTime(e.Created), fmtTime(e.LastActive), fmtTime(e.Expires), e.Seq)
	}
	return tw.Flush()
}

func printEnv(w io.Writer, e *projector.Env) {
	fmt.Fprintf(w, "id:           %s\nname:         %s\nowner:        %s\nruntime:      %s\nresources:    %d cpus, %d MiB memory, %d MiB disk\n",
		e.ID, e.Name, e.Owner, e.Runtime, e.Resources.CPUs, e.Resources.MemoryMiB, e.Resources.DiskMiB)
	fmt.Fprintf(w, "host:         %s\nstate:        %s\nttl:          %ds\nlabels:       %v\ncreated:      %s\nstarted:      %s\nlast active:  %s\nexpires:      %s\n",
		e.Host, e.State, e.TTLSeconds, e.Labels, fmtTime(e.Created), fmtTime(e.Started), fmtTime(e.LastActive), fmtTime(e.Expires))
	if e.LastError != "" {
		fmt.Fprintf(w, "last error:   %s\n", e.LastError)
	}
	fmt.Fprintf(w, "seq:          %d\n", e.Seq)
}

func printHosts(w io.Writer, hosts []*projector.Host) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tSTATE\tCPUS\tMEM MiB\tENVS\tJOINED\tSEQ")
	for _, h := range hosts {
		state := h.State
		if state == "" {
			state = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d/%d\t%d/%d\t%s\t%d\n", h.ID, h.Address, state, h.Allocated.CPUs, h.Capacity.CPUs,
			h.Allocated.MemoryMiB, h.Capacity.MemoryMiB, h.EnvCount, h.Capacity.MaxEnvironments, fmtTime(h.Joined), h.Seq)
	}
	return tw.Flush()
}
