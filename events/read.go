// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readerInactiveThreshold is how long the server keeps a reader's ephemeral consumer after its
// client went away without deleting it.
const readerInactiveThreshold = 30 * time.Second

// Position is where a reader starts: at stream sequence Seq (inclusive), or else at the first
// event stored at or after Time. The zero value is the beginning of the log.
type Position struct {
	Seq  uint64
	Time time.Time
}

// DecodeError is a stored message that cannot be read as an event (a newer schema version,
// garbage). errors.Is(err, ErrUnknownVersion) holds for a newer version.
type DecodeError struct {
	Seq     uint64
	Subject string
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("event log: seq %d (%s): %v", e.Seq, e.Subject, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// decodeStored decodes a stored message and fills the fields that come from JetStream.
func decodeStored(data []byte, seq uint64, subject string, stored time.Time) (*Event, error) {
	ev, err := Decode(data)
	if err != nil {
		return nil, &DecodeError{Seq: seq, Subject: subject, Err: err}
	}
	ev.Seq, ev.Subject, ev.Stored = seq, subject, stored
	return ev, nil
}

// Get reads the event at one stream sequence. A missing sequence gives an error matching
// jetstream.ErrMsgNotFound.
func (l *Log) Get(ctx context.Context, seq uint64) (*Event, error) {
	msg, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("event log: get seq %d: %w", seq, err)
	}
	return decodeStored(msg.Data, msg.Sequence, msg.Subject, msg.Time)
}

// Follow calls fn for every event matching filters (subjects, wildcards allowed; none = all)
// from position on, in stream order, and keeps following new events. It returns nil when ctx
// ends, or fn's error, or an error naming the sequence of a message it cannot decode.
func (l *Log) Follow(ctx context.Context, from Position, filters []string, fn func(*Event) error) error {
	err := l.read(ctx, from, filters, 0, fn)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// Replay is Follow up to the stream's last sequence at the time of the call: it returns nil
// once every matching event up to there went to fn (at once when there are none).
func (l *Log) Replay(ctx context.Context, from Position, filters []string, fn func(*Event) error) error {
	last, err := l.LastSeq(ctx)
	if err != nil {
		return err
	}
	if last == 0 || from.Seq > last {
		return nil
	}
	return l.read(ctx, from, filters, last, fn)
}

// read runs an ordered consumer from `from` and calls fn per event. With until > 0 it stops
// after the last matching event whose sequence is at most until; with until == 0 it runs
// until ctx ends (returning ctx's error).
func (l *Log) read(ctx context.Context, from Position, filters []string, until uint64, fn func(*Event) error) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: readerInactiveThreshold,
	}
	switch {
	case from.Seq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from.Seq
	case !from.Time.IsZero():
		t := from.Time
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cons, err := l.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("event log: reader: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("event log: reader: %w", err)
	}
	defer l.stopReader(cons, it)
	if until > 0 {
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			return nil
		}
	}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("event log: reader: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("event log: reader: %w", err)
		}
		seq := meta.Sequence.Stream
		if until > 0 && seq > until {
			return nil
		}
		ev, err := decodeStored(msg.Data(), seq, msg.Subject(), meta.Timestamp)
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
		if until > 0 && (seq >= until || meta.NumPending == 0) {
			return nil
		}
	}
}

// stopReader stops the iterator and deletes its ephemeral consumer instead of leaving it to
// the inactivity threshold.
func (l *Log) stopReader(cons jetstream.Consumer, it jetstream.MessagesContext) {
	it.Stop()
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.js.DeleteConsumer(ctx, StreamName, info.Name) // best effort: the threshold removes it anyway
}
