// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// flakyLog answers Append with errs, in turn, then succeeds; it records the events it got.
type flakyLog struct {
	EventLog
	errs []error
	got  []*events.Event
}

func (f *flakyLog) Append(_ context.Context, ev *events.Event, head events.Head) (events.Head, error) {
	f.got = append(f.got, ev)
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return events.Head{}, err
	}
	return events.Head{Seq: head.Seq + 1}, nil
}

// TestAppendThroughElection: an append the stream did not answer (its leader died, no new one
// yet) is sent again, the same event after the same head, until it is stored; any other error
// ends it at once.
func TestAppendThroughElection(t *testing.T) {
	refused := errors.New("permissions violation")
	for _, tc := range []struct {
		name  string
		errs  []error
		tries int
		ok    bool
	}{
		{"stored at once", nil, 1, true},
		{"no leader for a while", []error{jetstream.ErrNoStreamResponse, context.DeadlineExceeded, jetstream.ErrNoStreamResponse}, 4, true},
		{"refused", []error{refused}, 1, false},
		{"conflict", []error{&events.ConflictError{}}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &flakyLog{errs: tc.errs}
			ev, err := events.NewEnvEvent("h1", "e1", events.EnvExec, "test", nil)
			if err != nil {
				t.Fatal(err)
			}
			head, err := appendThroughElection(context.Background(), log, ev, events.Head{Seq: 7})
			if (err == nil) != tc.ok || len(log.got) != tc.tries {
				t.Fatalf("err %v after %d tries; want ok %v after %d", err, len(log.got), tc.ok, tc.tries)
			}
			for _, g := range log.got {
				if g != ev {
					t.Fatal("a retry sent another event")
				}
			}
			if tc.ok && head.Seq != 8 {
				t.Fatalf("head %+v", head)
			}
		})
	}
}
