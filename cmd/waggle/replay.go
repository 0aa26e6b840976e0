// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/projector"
)

// parseWhen reads a moment: an RFC 3339 time (fractions allowed), a UTC date-time
// "2006-01-02T15:04:05" or date "2006-01-02", or a duration meaning that long before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, errors.New("empty time")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-26T17:00:00Z), a date, or a duration ago (10m)", s)
}

func newReplayCmd() *cobra.Command {
	var at string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "replay --at TIME [--json]",
		Short: "Print the view as it was at TIME (server store time), folded in memory from the log",
		Long: "Print the view as it was at TIME: the fold of every event the server stored at or before TIME.\n" +
			"The view hash it prints equals `waggle env ls --hash` when TIME is now and the projector is caught up.",
		Args: cobra.NoArgs,
	}
	natsF := newNATSFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := parseWhen(at, time.Now())
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		nc, l, err := natsF.bindTool(ctx, "waggle-replay", operatorRole)
		if err != nil {
			return err
		}
		defer nc.Close()
		v, err := projector.ReplayAt(ctx, l, t)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return writeJSON(out, map[string]any{"at": t, "seq": v.Seq, "hash": v.Hash(),
				"envs": v.EnvList(), "hosts": v.HostList()})
		}
		fmt.Fprintf(out, "view at %s (seq %d)\n\n", t.UTC().Format(time.RFC3339Nano), v.Seq)
		if err := printEnvs(out, v.EnvList()); err != nil {
			return err
		}
		fmt.Fprintln(out)
		if err := printHosts(out, v.HostList()); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nview hash %s\n", v.Hash())
		return nil
	}
	cmd.Flags().StringVar(&at, "at", "", "the moment: RFC 3339 time, date, or duration ago (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("at")
	return cmd
}
