// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
)

// fixture appends a small history to a fresh log, with a digest after every 40 events, and
// returns every stored event.
func fixture(t *testing.T) []*events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	l := eventstest.Start(t).Log
	heads := map[string]events.Head{}
	appendEv := func(ev *events.Event) {
		agg := events.AggregateOf(ev)
		h, err := l.Append(ctx, ev, heads[agg])
		if err != nil {
			t.Fatal(err)
		}
		heads[agg] = h
	}
	var covered uint64
	digest := func() {
		var evs []*events.Event
		if err := l.Replay(ctx, events.Position{Seq: covered + 1}, nil, func(ev *events.Event) error {
			evs = append(evs, ev)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		d := Digest(evs)
		data, _ := json.Marshal(d)
		appendEv(&events.Event{ID: ulid.Make().String(), Type: events.AuditDigest, Principal: "system", Data: data})
		covered = d.LastSeq
	}
	lifecycle := []string{events.EnvRequested, events.EnvPlaced, events.EnvStarting, events.EnvStarted,
		events.EnvExec, events.EnvFileWritten, events.EnvExec, events.EnvDestroyRequested, events.EnvDestroyed}
	n := 0
	for _, typ := range lifecycle {
		for e := range 12 {
			ev, err := events.NewEnvEvent("h1", fmt.Sprintf("e%02d", e), typ, fmt.Sprintf("t%d", e%3), events.Exec{ExitCode: e})
			if err != nil {
				t.Fatal(err)
			}
			appendEv(ev)
			if n++; n%40 == 0 {
				digest()
			}
		}
	}
	digest()
	var all []*events.Event
	if err := l.Replay(ctx, events.Position{}, nil, func(ev *events.Event) error {
		all = append(all, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

// altered is a copy of ev whose stored bytes say another principal did it.
func altered(t *testing.T, ev *events.Event) *events.Event {
	t.Helper()
	c := *ev
	c.Principal = "mallory"
	raw, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := events.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	out.Seq, out.Subject, out.Stored = ev.Seq, ev.Subject, ev.Stored
	return out
}

func verify(evs []*events.Event) Report {
	v := NewVerifier()
	for _, ev := range evs {
		v.Add(ev)
	}
	return v.Report()
}

func TestVerify(t *testing.T) {
	all := fixture(t)
	// index of the n-th event (0-based) of an aggregate.
	nth := func(env string, n int) int {
		for i, ev := range all {
			if ev.Env == env {
				if n == 0 {
					return i
				}
				n--
			}
		}
		t.Fatalf("no event %d of %s", n, env)
		return -1
	}
	agg := events.EnvAggregate("h1", "e03")
	tests := []struct {
		name    string
		tamper  func([]*events.Event) []*events.Event
		kind    string // first problem's kind ("" = verifies)
		seq     func() uint64
		prevSeq func() uint64
	}{
		{name: "untouched", tamper: func(e []*events.Event) []*events.Event { return e }},
		{name: "altered middle event", kind: KindChain,
			tamper: func(e []*events.Event) []*events.Event { e[nth("e03", 4)] = altered(t, e[nth("e03", 4)]); return e },
			seq:    func() uint64 { return all[nth("e03", 5)].Seq }, prevSeq: func() uint64 { return all[nth("e03", 4)].Seq }},
		{name: "removed middle event", kind: KindChain,
			tamper: func(e []*events.Event) []*events.Event { return slices.Delete(e, nth("e03", 4), nth("e03", 4)+1) },
			seq:    func() uint64 { return all[nth("e03", 5)].Seq }, prevSeq: func() uint64 { return all[nth("e03", 3)].Seq }},
		{name: "removed first event", kind: KindChain,
			tamper: func(e []*events.Event) []*events.Event { return slices.Delete(e, nth("e03", 0), nth("e03", 0)+1) },
			seq:    func() uint64 { return all[nth("e03", 1)].Seq }},
		{name: "altered last event (digest catches it)", kind: KindDigest,
			tamper: func(e []*events.Event) []*events.Event { e[nth("e03", 8)] = altered(t, e[nth("e03", 8)]); return e }},
		{name: "removed last event (digest catches it)", kind: KindDigest,
			tamper: func(e []*events.Event) []*events.Event { return slices.Delete(e, nth("e03", 8), nth("e03", 8)+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := verify(tt.tamper(slices.Clone(all)))
			if tt.kind == "" {
				if !rep.OK() || rep.Digests != 3 || rep.Covered != all[len(all)-2].Seq || rep.Aggregates != 13 {
					t.Fatalf("report %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatal("tampered log verifies")
			}
			p := rep.Problems[0]
			if p.Kind != tt.kind {
				t.Fatalf("first problem %v, want kind %s", p, tt.kind)
			}
			switch tt.kind {
			case KindChain:
				if p.Aggregate != agg || p.Seq != tt.seq() || (tt.prevSeq != nil && p.PrevSeq != tt.prevSeq()) {
					t.Fatalf("problem %v, want aggregate %s seq %d", p, agg, tt.seq())
				}
				if !strings.Contains(p.String(), agg) || !strings.Contains(p.String(), fmt.Sprint(p.Seq)) {
					t.Fatalf("message %q does not name aggregate and sequence", p)
				}
			case KindDigest:
				last := all[nth("e03", 8)].Seq
				if p.First > last || p.Last < last {
					t.Fatalf("problem %v does not cover seq %d", p, last)
				}
			}
			t.Log(p)
		})
	}
}

func TestRange(t *testing.T) {
	evs := make([]*events.Event, 10)
	for i := range evs {
		evs[i] = &events.Event{Seq: uint64(i + 1), Raw: []byte(fmt.Sprint(i))}
	}
	var r Range
	for _, ev := range evs {
		r.Add(ev)
		r.Add(ev) // a repeat is ignored
	}
	if r.Len() != 10 || r.Next() != 11 {
		t.Fatalf("len %d next %d", r.Len(), r.Next())
	}
	d := r.Cut(4)
	if d != Digest(evs[:4]) || d.FirstSeq != 1 || d.LastSeq != 4 || d.Count != 4 {
		t.Fatalf("cut %+v", d)
	}
	if r.Through(4) != d {
		t.Fatal("Through(4) != Cut(4)")
	}
	r.CoverThrough(d.LastSeq)
	if r.Len() != 6 || r.Covered() != 4 || r.Cut(0) != Digest(evs[4:]) {
		t.Fatalf("after cover: len %d covered %d", r.Len(), r.Covered())
	}
	r.CoverThrough(20)
	if r.Len() != 0 || r.Next() != 21 {
		t.Fatalf("after cover past the end: len %d next %d", r.Len(), r.Next())
	}
	if Digest(evs[:3]) == Digest([]*events.Event{evs[0], evs[2], evs[1]}) {
		t.Fatal("digest ignores order")
	}
}

func TestDescribe(t *testing.T) {
	ev, _ := events.NewEnvEvent("h1", "e1", events.EnvExec, "t1", events.Exec{Language: "python", CodeSHA256: "abc", ExitCode: 3})
	r, ok := Describe(ev)
	if !ok || r.Action != "exec" || r.Principal != "t1" || !strings.Contains(r.Detail, "code_sha256=abc") || !strings.Contains(r.Detail, "exit=3") {
		t.Fatalf("%+v", r)
	}
	touched, _ := events.NewEnvEvent("h1", "e1", events.EnvTouched, "host:h1", nil)
	if _, ok := Describe(touched); ok {
		t.Fatal("touched is not an action")
	}
}
