// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/waggle-dev/waggle/events"
)

// EventLog is the part of *events.Log the agent uses.
type EventLog interface {
	JetStream() jetstream.JetStream
	Head(ctx context.Context, aggregate string) (events.Head, error)
	Append(ctx context.Context, ev *events.Event, head events.Head) (events.Head, error)
	Load(ctx context.Context, aggregate string) ([]*events.Event, events.Head, error)
	Scan(ctx context.Context, subject string, from uint64, fn func(*events.Event) error) error
}

// maxAppendAttempts bounds the re-read-and-retry loop of one append under contention.
const maxAppendAttempts = 8

// aggregate is one environment folded from the log (events.Env), with the head it was read at.
type aggregate struct {
	host, env string
	loaded    bool
	head      events.Head
	events.Env
}

// load reads the aggregate from the log.
func (g *aggregate) load(ctx context.Context, log EventLog) error {
	evs, head, err := log.Load(ctx, events.EnvAggregate(g.host, g.env))
	if err != nil {
		return fmt.Errorf("load environment %s: %w", g.env, err)
	}
	fresh := aggregate{host: g.host, env: g.env, head: head, loaded: true}
	for _, ev := range evs {
		// The writers refuse illegal transitions; skipping one here keeps a damaged
		// history readable (audit verify reports it).
		_ = fresh.Apply(ev)
	}
	*g = fresh
	return nil
}

// appendEvent appends an event of type typ if the state machine allows it from the aggregate's
// current state, re-reading the aggregate after a conflict (someone else moved it). It reports
// false, without error, when the current state does not take typ. The event is made once: its
// time is when it happened, and its id deduplicates an attempt whose outcome was unknown.
func (g *aggregate) appendEvent(ctx context.Context, log EventLog, typ, principal, correlation string, data any) (bool, error) {
	ev, err := events.NewEnvEvent(g.host, g.env, typ, principal, data)
	if err != nil {
		return false, err
	}
	ev.Correlation = correlation
	for range maxAppendAttempts {
		if !g.loaded {
			if err := g.load(ctx, log); err != nil {
				return false, err
			}
		}
		if !g.Allows(typ) {
			return false, nil
		}
		head, err := appendThroughElection(ctx, log, ev, g.head)
		if errors.Is(err, events.ErrConflict) {
			g.loaded = false
			continue
		}
		if err != nil {
			g.loaded = false
			return false, fmt.Errorf("append %s to environment %s: %w", typ, g.env, err)
		}
		g.head = head
		_ = g.Apply(ev) // allowed: checked above
		return true, nil
	}
	return false, fmt.Errorf("append %s to environment %s: still conflicting after %d attempts", typ, g.env, maxAppendAttempts)
}

// appendAttemptTimeout bounds one attempt of appendThroughElection, and electionBudget all of
// them: a JetStream stream elects a new leader within nats-server's election timeout (4-9 s).
const (
	appendAttemptTimeout = 5 * time.Second
	electionBudget       = 30 * time.Second
)

// appendThroughElection appends ev after head, and again (the same event and head: the
// stream stores it once) while the outcome is unknown because the stream did not answer. A
// replicated stream whose leader died answers nothing until its peers elect another, which
// takes seconds; an event such as a call's audit record must not be dropped meanwhile. It
// gives up when ctx ends or after electionBudget.
func appendThroughElection(ctx context.Context, log EventLog, ev *events.Event, head events.Head) (events.Head, error) {
	give := time.Now().Add(electionBudget)
	for {
		actx, cancel := context.WithTimeout(ctx, appendAttemptTimeout)
		h, err := log.Append(actx, ev, head)
		cancel()
		unknown := errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
			errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
		if err == nil || !unknown || ctx.Err() != nil || time.Now().After(give) {
			return h, err
		}
		select {
		case <-ctx.Done():
			return h, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// foldHost replays every environment of host and returns their folded aggregates.
func foldHost(ctx context.Context, log EventLog, host string) (map[string]*aggregate, error) {
	aggs := map[string]*aggregate{}
	err := log.Scan(ctx, events.HostEnvs(host), 0, func(ev *events.Event) error {
		g := aggs[ev.Env]
		if g == nil {
			g = &aggregate{host: host, env: ev.Env}
			aggs[ev.Env] = g
		}
		_ = g.Apply(ev)
		g.head = events.Head{Seq: ev.Seq, Hash: events.Hash(ev.Raw)}
		g.loaded = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replay environments of host %s: %w", host, err)
	}
	return aggs, nil
}
