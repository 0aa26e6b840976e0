// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict means the aggregate moved since the head the caller appended after: another
// writer appended first. Re-read (fold) the aggregate and decide again.
var ErrConflict = errors.New("events: conflict: the aggregate changed since it was read")

// Error codes JetStream answers when an expected last sequence does not hold: 10071 names the
// actual sequence; 10164 is what a replicated stream answers while another append to the same
// subject is in flight.
const (
	errCodeWrongLastSeq         = 10071
	errCodeWrongLastSeqConstant = 10164
)

// ConflictError is the ErrConflict of one append (errors.Is(err, ErrConflict) holds).
type ConflictError struct {
	Aggregate string // wildcard subject of the aggregate
	Expected  uint64 // the head sequence the append expected
	Actual    Head   // the aggregate's head read right after the rejection
	Err       error  // the server's answer
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("events: conflict on %s: expected last sequence %d, found %d: %v", e.Aggregate, e.Expected, e.Actual.Seq, e.Err)
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func (e *ConflictError) Unwrap() error { return e.Err }

// Head is the last event of an aggregate: its stream sequence and Hash of its stored bytes.
// The zero value is an empty aggregate.
type Head struct {
	Seq  uint64
	Hash string
}

// Head reads the last event of an aggregate (a wildcard subject such as EnvAggregate(h, e))
// from the stream leader. An empty aggregate gives the zero Head.
func (l *Log) Head(ctx context.Context, aggregate string) (Head, error) {
	msg, err := l.stream.GetLastMsgForSubject(ctx, aggregate)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Head{}, nil
	}
	if err != nil {
		return Head{}, fmt.Errorf("event log: head of %s: %w", aggregate, err)
	}
	return Head{Seq: msg.Sequence, Hash: Hash(msg.Data)}, nil
}

// Append stores ev as the next event of its aggregate after head, and returns the head ev
// makes (its sequence and hash; after a retry of an event stored before others, still ev's).
//
// It sets ev.V (SchemaVersion when 0), ev.Time (now when zero) and ev.Prev = head.Hash, then
// publishes with Nats-Msg-Id = ev.ID and the expectation that head.Seq is still the
// aggregate's last sequence. If another event came first, the error satisfies
// errors.Is(err, ErrConflict) (a *ConflictError). Calling Append again with the same event
// and head after an unknown outcome (a timeout, a lost ack) is safe: if the first attempt was
// stored, Append succeeds without storing it twice and ev describes the stored event.
//
// On success ev.Seq, ev.Raw, ev.Subject and ev.Stored are filled; Stored is the time the ack
// arrived (the server's exact timestamp is what readers see). Appends to one aggregate are
// serialized inside one Log.
func (l *Log) Append(ctx context.Context, ev *Event, head Head) (_ Head, err error) {
	defer l.metrics.appended(time.Now(), &err)
	if ev.ID == "" || ev.Type == "" {
		return Head{}, errors.New("event log: append: event needs an id and a type")
	}
	subject, err := SubjectOf(ev)
	if err != nil {
		return Head{}, fmt.Errorf("event log: append: %w", err)
	}
	aggregate := AggregateOf(ev)
	if ev.V == 0 {
		ev.V = SchemaVersion
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Prev = head.Hash
	raw, err := json.Marshal(ev)
	if err != nil {
		return Head{}, fmt.Errorf("event log: encode %s event %s: %w", ev.Type, ev.ID, err)
	}

	unlock, err := l.locks.lock(ctx, aggregate)
	if err != nil {
		return Head{}, fmt.Errorf("event log: append to %s: %w", aggregate, err)
	}
	defer unlock()

	ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: raw},
		jetstream.WithMsgID(ev.ID),
		jetstream.WithExpectStream(StreamName),
		jetstream.WithExpectLastSequenceForSubject(head.Seq, aggregate))
	switch {
	case err == nil && !ack.Duplicate:
		ev.Seq, ev.Raw, ev.Subject, ev.Stored = ack.Sequence, raw, subject, time.Now().UTC()
		return Head{Seq: ack.Sequence, Hash: Hash(raw)}, nil
	case err == nil:
		// A retry inside the dedupe window whose expectation still held (or a replicated stream,
		// which checks the message id first): the event is stored already, at ack.Sequence.
		l.metrics.lostAck.Inc()
		return l.adoptDuplicate(ctx, ev, subject, ack.Sequence)
	case IsWrongLastSeq(err):
		return l.resolveConflict(ctx, ev, subject, aggregate, head, err)
	default:
		return Head{}, fmt.Errorf("event log: append %s event %s to %s: %w", ev.Type, ev.ID, subject, err)
	}
}

// AppendNew reads the head of the events' aggregate and appends evs (all of that one
// aggregate) after it, in order, each after the previous one. A conflict (another writer came
// in between) is returned, not retried: callers decide. It is not atomic: after an error the
// events before the failing one are stored (their Seq is set). To require an empty aggregate
// (create-once), use Append with the zero Head instead.
func (l *Log) AppendNew(ctx context.Context, evs ...*Event) (Head, error) {
	if len(evs) == 0 {
		return Head{}, errors.New("event log: append: no events")
	}
	aggregate := AggregateOf(evs[0])
	for _, ev := range evs[1:] {
		if AggregateOf(ev) != aggregate {
			return Head{}, fmt.Errorf("event log: append: event %s is of %s, not %s", ev.ID, AggregateOf(ev), aggregate)
		}
	}
	head, err := l.Head(ctx, aggregate)
	if err != nil {
		return Head{}, err
	}
	for _, ev := range evs {
		if head, err = l.Append(ctx, ev, head); err != nil {
			return Head{}, err
		}
	}
	return head, nil
}

// resolveConflict tells a real conflict from a lost-ack retry of the same event: a standalone
// server checks the expectation before the message id, so the retry of a stored event is
// rejected as a conflict while the aggregate's last event is that very event.
func (l *Log) resolveConflict(ctx context.Context, ev *Event, subject, aggregate string, head Head, cause error) (Head, error) {
	last, err := l.stream.GetLastMsgForSubject(ctx, aggregate)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Head{}, &ConflictError{Aggregate: aggregate, Expected: head.Seq, Err: cause}
	}
	if err != nil {
		return Head{}, fmt.Errorf("event log: append %s: conflict (%w), then reading the head: %w", ev.ID, cause, err)
	}
	if last.Header.Get(jetstream.MsgIDHeader) != ev.ID {
		return Head{}, &ConflictError{Aggregate: aggregate, Expected: head.Seq, Actual: Head{Seq: last.Sequence, Hash: Hash(last.Data)}, Err: cause}
	}
	if err := adopt(ev, subject, last); err != nil {
		return Head{}, err
	}
	l.metrics.lostAck.Inc()
	return Head{Seq: last.Sequence, Hash: Hash(last.Data)}, nil
}

// adoptDuplicate fills ev from its stored copy at seq and returns the head that event made: a
// retry whose first attempt was stored before other events answers where ev is, not where the
// aggregate is now, so that a caller that folds ev next to that head never skips those events
// (its next append after the head conflicts and re-reads them).
func (l *Log) adoptDuplicate(ctx context.Context, ev *Event, subject string, seq uint64) (Head, error) {
	stored, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return Head{}, fmt.Errorf("event log: append %s: duplicate of seq %d, reading it: %w", ev.ID, seq, err)
	}
	if err := adopt(ev, subject, stored); err != nil {
		return Head{}, err
	}
	return Head{Seq: stored.Sequence, Hash: Hash(stored.Data)}, nil
}

// adopt replaces ev with its stored copy: the message with ev's id as message id, which must
// be the same event on the same subject (else the id was reused).
func adopt(ev *Event, subject string, msg *jetstream.RawStreamMsg) error {
	stored, err := decodeStored(msg.Data, msg.Sequence, msg.Subject, msg.Time)
	if err != nil {
		return err
	}
	if stored.ID != ev.ID || stored.Subject != subject {
		return fmt.Errorf("event log: append %s to %s: its id was already used by event %s at seq %d on %s",
			ev.ID, subject, stored.ID, msg.Sequence, stored.Subject)
	}
	*ev = *stored
	return nil
}

// IsWrongLastSeq reports an append or a revision-checked KV update that lost against another
// writer: JetStream's answer when the expected last sequence (or revision) does not hold, in
// either of its two codes.
func IsWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == errCodeWrongLastSeq || apiErr.ErrorCode == errCodeWrongLastSeqConstant
}
