// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events"
)

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Read the event log",
	}
	natsF := newNATSFlags(cmd)
	cmd.AddCommand(newEventsTailCmd(natsF))
	return cmd
}

func newEventsTailCmd(natsF *natsFlags) *cobra.Command {
	var sel events.Selector
	var since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print events as they are stored, one line each, until Ctrl-C",
		Long: "Print events one per line (sequence, stored time, subject, principal, a summary of the data)\n" +
			"and follow new ones until Ctrl-C. Without --since only new events are shown.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			filters, err := sel.Subjects()
			if err != nil {
				return err
			}
			start, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			nc, l, err := natsF.bindTool(ctx, "waggle-events-tail", operatorRole)
			if err != nil {
				return err
			}
			defer nc.Close()
			from := start.pos
			if start.newOnly {
				last, err := l.LastSeq(ctx)
				if err != nil {
					return err
				}
				from = events.Position{Seq: last + 1}
			}
			return tailEvents(ctx, cmd.OutOrStdout(), l, from, filters, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sel.Env, "env", "", "only events of this environment")
	f.StringVar(&sel.Host, "host", "", "only events of this host (its lifecycle and its environments)")
	f.StringVar(&sel.Type, "type", "", "only events of this type (requested, placed, exec, joined, ...)")
	f.StringVar(&since, "since", "", "start at a stream sequence (SEQ), a time (RFC 3339), a date or a duration ago (10m); default: new events only")
	f.BoolVar(&asJSON, "json", false, "print each event as one JSON object: seq, stored, subject and the stored event")
	return cmd
}

// sinceStart is where --since starts a tail.
type sinceStart struct {
	pos     events.Position
	newOnly bool // after the last event stored when the tail starts
}

// parseSince reads --since: empty (new events only), a sequence, or a moment as parseWhen
// reads it (an RFC 3339 time, a date, or a duration before now).
func parseSince(s string, now time.Time) (sinceStart, error) {
	if s == "" {
		return sinceStart{newOnly: true}, nil
	}
	if seq, err := strconv.ParseUint(s, 10, 64); err == nil {
		if seq == 0 {
			return sinceStart{}, fmt.Errorf("--since %q: sequences start at 1", s)
		}
		return sinceStart{pos: events.Position{Seq: seq}}, nil
	}
	t, err := parseWhen(s, now)
	if err != nil {
		return sinceStart{}, fmt.Errorf("--since %q: want a sequence number, an RFC 3339 time, a date or a duration ago", s)
	}
	if t.IsZero() { // the zero time would read as "no position": start at the first event
		return sinceStart{pos: events.Position{Seq: 1}}, nil
	}
	return sinceStart{pos: events.Position{Time: t}}, nil
}

// tailLine is one event in --json output.
type tailLine struct {
	Seq     uint64          `json:"seq"`
	Stored  time.Time       `json:"stored,omitzero"`
	Subject string          `json:"subject,omitempty"`
	Event   json.RawMessage `json:"event,omitempty"`
	Error   string          `json:"error,omitempty"` // why the stored message is unreadable
}

// tailEvents prints every matching event from `from` on until ctx ends. A stored message it
// cannot read (a newer schema version, garbage) is reported on its own line and skipped.
func tailEvents(ctx context.Context, w io.Writer, l *events.Log, from events.Position, filters []string, asJSON bool) error {
	enc := json.NewEncoder(w)
	for {
		err := l.Follow(ctx, from, filters, func(ev *events.Event) error {
			if asJSON {
				return enc.Encode(tailLine{Seq: ev.Seq, Stored: ev.Stored, Subject: ev.Subject, Event: ev.Raw})
			}
			_, err := fmt.Fprintf(w, "%-7d %s  %-44s %-20s %s\n", ev.Seq, ev.Stored.UTC().Format("2006-01-02T15:04:05.000Z"),
				ev.Subject, ev.Principal, ev.Summary())
			return err
		})
		var de *events.DecodeError
		if !errors.As(err, &de) {
			return err
		}
		if asJSON {
			err = enc.Encode(tailLine{Seq: de.Seq, Subject: de.Subject, Error: de.Err.Error()})
		} else {
			_, err = fmt.Fprintf(w, "%-7d unreadable: %v\n", de.Seq, de)
		}
		if err != nil {
			return err
		}
		from = events.Position{Seq: de.Seq + 1}
	}
}
