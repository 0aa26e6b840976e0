// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishWithoutAck stores ev after head exactly as Append would, but as a core NATS publish
// without a reply subject: the server stores it and the client never sees an ack.
func publishWithoutAck(t *testing.T, nc *nats.Conn, ev *Event, head Head) {
	t.Helper()
	ev.V, ev.Prev = SchemaVersion, head.Hash
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := SubjectOf(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: subject, Data: raw, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(head.Seq, 10))
	msg.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, AggregateOf(ev))
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestLostAckRetryStoredOnce(t *testing.T) {
	srv, l := newTestLog(t)
	nc := connect(t, srv)
	ctx := testCtx(t)
	agg := EnvAggregate("h1", "e1")

	head, err := l.Append(ctx, envEvent(t, "h1", "e1", EnvRequested, nil), Head{})
	if err != nil {
		t.Fatal(err)
	}

	// The publish reached the server, the ack was lost; the writer retries with the same
	// event and the same head.
	lost := envEvent(t, "h1", "e1", EnvPlaced, Placed{Host: "h1"})
	publishWithoutAck(t, nc, lost, head)
	waitLastSeq(t, l, head.Seq+1)
	got, err := l.Append(ctx, lost, head)
	if err != nil {
		t.Fatalf("retry after lost ack: %v", err)
	}
	if got.Seq != head.Seq+1 || lost.Seq != got.Seq || Hash(lost.Raw) != got.Hash {
		t.Fatalf("retry head %+v, event seq %d", got, lost.Seq)
	}

	// The same retry once more (its ack lost again) still stores nothing new.
	if again, err := l.Append(ctx, lost, head); err != nil || again != got {
		t.Fatalf("second retry: %+v, %v", again, err)
	}

	// Lost ack, then another writer appended: the retry is a conflict at first ...
	lost2 := envEvent(t, "h1", "e1", EnvStarting, nil)
	publishWithoutAck(t, nc, lost2, got)
	waitLastSeq(t, l, got.Seq+1)
	other, err := l.Append(ctx, envEvent(t, "h1", "e1", EnvExec, nil), Head{Seq: got.Seq + 1, Hash: Hash(mustGet(t, l, got.Seq+1).Raw)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, lost2, got); !errors.Is(err, ErrConflict) {
		t.Fatalf("retry behind another writer: %v, want conflict", err)
	}
	// ... and after re-reading the head it is recognised as stored (dedupe), not appended again.
	// The head it returns is its own, not the other writer's: a caller that folds the event it
	// appended next to the returned head must not skip the event that came after it.
	h, err := l.Head(ctx, agg)
	if err != nil || h != other {
		t.Fatalf("head %+v %v, want %+v", h, err, other)
	}
	got2, err := l.Append(ctx, lost2, h)
	if err != nil || lost2.Seq != got.Seq+1 || lost2.Prev != got.Hash {
		t.Fatalf("retry with fresh head: %+v, %v; event seq %d", got2, err, lost2.Seq)
	}
	if want := (Head{Seq: got.Seq + 1, Hash: Hash(lost2.Raw)}); got2 != want {
		t.Fatalf("retry with fresh head returned %+v, want the adopted event's head %+v (the aggregate's is %+v)", got2, want, other)
	}
	// Appending after that head is a conflict: the other writer's event is in between.
	if _, err := l.Append(ctx, envEvent(t, "h1", "e1", EnvExec, nil), got2); !errors.Is(err, ErrConflict) {
		t.Fatalf("append after the adopted head: %v, want conflict", err)
	}

	evs, _, err := l.Load(ctx, agg)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("%d events stored, want 4", len(evs))
	}
	checkChain(t, evs)
}

func waitLastSeq(t *testing.T, l *Log, want uint64) {
	t.Helper()
	ctx := testCtx(t)
	for {
		last, err := l.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if last >= want {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func mustGet(t *testing.T, l *Log, seq uint64) *Event {
	t.Helper()
	ev, err := l.Get(testCtx(t), seq)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestStreamRefusesDeleteAndPurge(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	if _, err := l.Append(ctx, envEvent(t, "h1", "e1", EnvRequested, nil), Head{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() error
	}{
		{"DeleteMsg", func() error { return l.Stream().DeleteMsg(ctx, 1) }},
		{"SecureDeleteMsg", func() error { return l.Stream().SecureDeleteMsg(ctx, 1) }},
		{"Purge", func() error { return l.Stream().Purge(ctx) }},
		{"Purge subject", func() error { return l.Stream().Purge(ctx, jetstream.WithPurgeSubject(EnvAggregate("h1", "e1"))) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); err == nil {
				t.Fatal("the stream allowed it")
			}
		})
	}
	info, err := l.Stream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || !info.Config.DenyDelete || !info.Config.DenyPurge || info.Config.MaxAge != 0 ||
		info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates < MinDuplicateWindow {
		t.Fatalf("stream state %+v config %+v", info.State, info.Config)
	}
}

func TestUnreadableEventsNameTheirSequence(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	if _, err := l.Append(ctx, envEvent(t, "h1", "e1", EnvRequested, nil), Head{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		data        string
		wantVersion bool
	}{
		{"newer version", `{"id":"01J","type":"placed","v":99,"env":"e1","host":"h1"}`, true},
		{"garbage", `not json`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ack, err := l.JetStream().Publish(ctx, EnvSubject("h1", "e1", EnvPlaced), []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.Get(ctx, ack.Sequence)
			var de *DecodeError
			if !errors.As(err, &de) || de.Seq != ack.Sequence || errors.Is(err, ErrUnknownVersion) != tt.wantVersion {
				t.Fatalf("get: %v", err)
			}
			t.Logf("get: %v", err)
			err = l.Replay(ctx, Position{Seq: ack.Sequence}, nil, func(*Event) error { return nil })
			if !errors.As(err, &de) || de.Seq != ack.Sequence {
				t.Fatalf("replay: %v", err)
			}
			if _, _, err := l.Load(ctx, EnvAggregate("h1", "e1")); !errors.As(err, &de) {
				t.Fatalf("load: %v", err)
			}
		})
	}
}

func TestReusedIDIsRefused(t *testing.T) {
	_, l := newTestLog(t)
	ctx := testCtx(t)
	first := envEvent(t, "h1", "e1", EnvRequested, nil)
	if _, err := l.Append(ctx, first, Head{}); err != nil {
		t.Fatal(err)
	}
	reuse := envEvent(t, "h1", "e2", EnvRequested, nil)
	reuse.ID = first.ID
	if _, err := l.Append(ctx, reuse, Head{}); err == nil || errors.Is(err, ErrConflict) || reuse.Seq != 0 {
		t.Fatalf("append with a reused id: %v (seq %d)", err, reuse.Seq)
	}
	if evs, _, err := l.Load(ctx, EnvAggregate("h1", "e2")); err != nil || len(evs) != 0 {
		t.Fatalf("e2 has %d events, %v", len(evs), err)
	}
}
