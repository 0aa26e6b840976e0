// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"context"
	"fmt"

	"github.com/waggle-dev/waggle/events"
)

// Problem kinds.
const (
	KindChain   = "chain"   // an aggregate's hash chain is broken or a link is missing
	KindDigest  = "digest"  // a digest does not match the events it covers
	KindSubject = "subject" // an event's subject does not match its envelope
)

// Problem is one finding of the verifier.
type Problem struct {
	Kind      string `json:"kind"`
	Seq       uint64 `json:"seq"`                // the event (or digest) where the problem shows
	Aggregate string `json:"aggregate"`          // the aggregate's wildcard subject
	PrevSeq   uint64 `json:"prev_seq,omitempty"` // chain: the previous event of the aggregate
	First     uint64 `json:"first,omitempty"`    // digest: the covered range
	Last      uint64 `json:"last,omitempty"`
	Detail    string `json:"detail"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s: aggregate %s, seq %d: %s", p.Kind, p.Aggregate, p.Seq, p.Detail)
}

// Report is the outcome of a verification.
type Report struct {
	Events     int       `json:"events"`
	Aggregates int       `json:"aggregates"`
	Digests    int       `json:"digests"`
	Covered    uint64    `json:"covered_through"` // last sequence covered by a verified digest chain
	LastSeq    uint64    `json:"last_seq"`
	Problems   []Problem `json:"problems,omitempty"`
}

// OK reports whether nothing was found.
func (r Report) OK() bool { return len(r.Problems) == 0 }

type link struct {
	seq  uint64
	hash string
}

// Verifier checks stored events fed to it in stream order: every event's Prev must be the
// Hash of the previous event of its aggregate (empty for the first), and every digest must
// start where the previous one ended and match the events it covers.
type Verifier struct {
	heads  map[string]link
	rng    Range
	report Report
}

// NewVerifier is a verifier at the start of the log.
func NewVerifier() *Verifier { return &Verifier{heads: map[string]link{}} }

// Add checks one stored event (Seq, Subject and Raw filled).
func (v *Verifier) Add(ev *events.Event) {
	v.report.Events++
	v.report.LastSeq = ev.Seq
	agg := events.AggregateOf(ev)
	if ev.Subject != "" {
		if want, err := events.SubjectOf(ev); err != nil || want != ev.Subject {
			v.problem(Problem{Kind: KindSubject, Seq: ev.Seq, Aggregate: agg,
				Detail: fmt.Sprintf("stored under %s but its envelope says %s", ev.Subject, want)})
		}
	}
	prev, known := v.heads[agg]
	switch {
	case !known && ev.Prev != "":
		v.problem(Problem{Kind: KindChain, Seq: ev.Seq, Aggregate: agg,
			Detail: "missing link: the first stored event of the aggregate names a previous event (prev " + short(ev.Prev) + ")"})
	case known && ev.Prev == "":
		v.problem(Problem{Kind: KindChain, Seq: ev.Seq, Aggregate: agg, PrevSeq: prev.seq,
			Detail: fmt.Sprintf("missing link: the event starts a new chain after seq %d", prev.seq)})
	case known && ev.Prev != prev.hash:
		v.problem(Problem{Kind: KindChain, Seq: ev.Seq, Aggregate: agg, PrevSeq: prev.seq,
			Detail: fmt.Sprintf("broken link: prev %s is not the hash %s of seq %d (seq %d was altered, or an event between was removed)",
				short(ev.Prev), short(prev.hash), prev.seq, prev.seq)})
	}
	if !known {
		v.report.Aggregates++
	}
	v.heads[agg] = link{seq: ev.Seq, hash: events.Hash(ev.Raw)}
	if ev.Env == "" && ev.Host == "" && ev.Type == events.AuditDigest {
		v.checkDigest(ev)
	}
	v.rng.Add(ev)
}

func (v *Verifier) checkDigest(ev *events.Event) {
	v.report.Digests++
	agg := events.AggregateOf(ev)
	var d events.Digest
	if err := ev.DecodeData(&d); err != nil {
		v.problem(Problem{Kind: KindDigest, Seq: ev.Seq, Aggregate: agg, Detail: err.Error()})
		return
	}
	if d.FirstSeq != v.rng.Covered()+1 {
		v.problem(Problem{Kind: KindDigest, Seq: ev.Seq, Aggregate: agg, First: d.FirstSeq, Last: d.LastSeq,
			Detail: fmt.Sprintf("digest covers %d..%d but the previous digest ends at %d", d.FirstSeq, d.LastSeq, v.rng.Covered())})
	}
	v.rng.CoverThrough(d.FirstSeq - 1)
	got := v.rng.Through(d.LastSeq)
	if got.Count != d.Count || got.SHA256 != d.SHA256 {
		v.problem(Problem{Kind: KindDigest, Seq: ev.Seq, Aggregate: agg, First: d.FirstSeq, Last: d.LastSeq,
			Detail: fmt.Sprintf("digest over %d..%d does not match the stored events: it says %d events, hash %s; found %d events, hash %s (an event in the range was altered, removed or added)",
				d.FirstSeq, d.LastSeq, d.Count, short(d.SHA256), got.Count, short(got.SHA256))})
	}
	v.rng.CoverThrough(d.LastSeq)
	v.report.Covered = d.LastSeq
}

func (v *Verifier) problem(p Problem) { v.report.Problems = append(v.report.Problems, p) }

// Report is what the verifier found so far.
func (v *Verifier) Report() Report {
	r := v.report
	r.Problems = append([]Problem(nil), v.report.Problems...)
	return r
}

// Verify reads the log from the beginning up to its last sequence through a Verifier.
func Verify(ctx context.Context, log *events.Log) (Report, error) {
	v := NewVerifier()
	err := log.Replay(ctx, events.Position{}, nil, func(ev *events.Event) error {
		v.Add(ev)
		return nil
	})
	if err != nil {
		return v.Report(), fmt.Errorf("audit verify: %w", err)
	}
	return v.Report(), nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return `""`
	}
	return h
}
