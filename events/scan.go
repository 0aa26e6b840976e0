// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Readers without consumers. Load, Scan and Watch read the stream one message at a time with
// the stream's message-get API (the next message at or after a sequence on a subject), so a
// role needs no permission to create consumers on the event stream: a consumer could be named
// after another role's durable one and take over its deliveries. They suit the small reads of
// routers and host agents (one aggregate, one host's environments); Follow and Replay stream
// the whole log through an ordered consumer for projectors and operators.

// watchPoll is how often Watch looks at the stream when no notification came: a notification
// is a core NATS message, which may be dropped.
const watchPoll = 500 * time.Millisecond

// Load reads every event of an aggregate (a wildcard subject such as EnvAggregate(h, e)) in
// order, and the head they end at. An empty aggregate gives no events and the zero Head.
func (l *Log) Load(ctx context.Context, aggregate string) ([]*Event, Head, error) {
	head, err := l.Head(ctx, aggregate)
	if err != nil || head.Seq == 0 {
		return nil, head, err
	}
	var evs []*Event
	if _, err := l.scan(ctx, aggregate, 1, head.Seq, func(ev *Event) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		return nil, Head{}, fmt.Errorf("event log: load %s: %w", aggregate, err)
	}
	return evs, head, nil
}

// Scan calls fn, in stream order, for every event on subject (wildcards allowed) from sequence
// from (0: the beginning) up to the stream's last sequence at the time of the call. fn's error
// ends the scan and is returned.
func (l *Log) Scan(ctx context.Context, subject string, from uint64, fn func(*Event) error) error {
	last, err := l.LastSeq(ctx)
	if err != nil || last == 0 {
		return err
	}
	if _, err := l.scan(ctx, subject, max(from, 1), last, fn); err != nil {
		return fmt.Errorf("event log: scan %s: %w", subject, err)
	}
	return nil
}

// Watch calls fn, in stream order, for every event of aggregate from sequence from on, and
// keeps watching for new ones until ctx ends (then it returns nil) or fn returns an error
// (returned). A core subscription on the aggregate wakes it when an event is published; it
// reads what was stored from the stream, so an append the stream refused is never seen.
func (l *Log) Watch(ctx context.Context, aggregate string, from uint64, fn func(*Event) error) error {
	wake := make(chan struct{}, 1)
	sub, err := l.nc.Subscribe(aggregate, func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("event log: watch %s: %w", aggregate, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	poll := time.NewTimer(watchPoll)
	defer poll.Stop()
	// A notification can arrive before the stream has stored its message: after a wake-up
	// that found nothing, look again soon, a few times (retry counts them; -1: not retrying).
	next, retry := max(from, 1), -1
	for {
		n, err := l.scan(ctx, aggregate, next, 0, fn)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("event log: watch %s: %w", aggregate, err)
		}
		if n == next && retry >= 0 && retry < len(watchRetries) {
			poll.Reset(watchRetries[retry])
			retry++
		} else {
			poll.Reset(watchPoll)
			retry = -1
		}
		next = n
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			retry = 0
		case <-poll.C:
		}
	}
}

// watchRetries are the pauses before Watch looks again after a notification whose event was
// not stored yet.
var watchRetries = []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond}

// scan calls fn for each message on subject from sequence from on, until the stream has none
// (until == 0) or past until, and returns the sequence to continue from.
func (l *Log) scan(ctx context.Context, subject string, from, until uint64, fn func(*Event) error) (uint64, error) {
	next := from
	for until == 0 || next <= until {
		msg, err := l.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return next, nil
		}
		if err != nil {
			return next, err
		}
		if until > 0 && msg.Sequence > until {
			return next, nil
		}
		ev, err := decodeStored(msg.Data, msg.Sequence, msg.Subject, msg.Time)
		if err != nil {
			return next, err
		}
		next = msg.Sequence + 1
		if err := fn(ev); err != nil {
			return next, err
		}
	}
	return next, nil
}
