// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"github.com/waggle-dev/waggle/events"
)

// entry is one covered event: its stream sequence and the SHA-256 of its stored bytes.
type entry struct {
	seq  uint64
	hash [sha256.Size]byte
}

func entryOf(ev *events.Event) entry {
	return entry{seq: ev.Seq, hash: sha256.Sum256(ev.Raw)}
}

// digestOf is the digest of consecutive covered events. Its SHA256 is the SHA-256 over, for
// each event in sequence order, its stream sequence (8 bytes, big-endian) followed by the
// SHA-256 of its stored bytes; so a changed, removed, added or reordered event changes it.
func digestOf(entries []entry) events.Digest {
	h := sha256.New()
	var buf [8]byte
	for _, e := range entries {
		binary.BigEndian.PutUint64(buf[:], e.seq)
		h.Write(buf[:])
		h.Write(e.hash[:])
	}
	d := events.Digest{Count: len(entries), SHA256: hex.EncodeToString(h.Sum(nil))}
	if len(entries) > 0 {
		d.FirstSeq, d.LastSeq = entries[0].seq, entries[len(entries)-1].seq
	}
	return d
}

// Digest is the digest of events (stored events with Seq and Raw, in sequence order).
func Digest(evs []*events.Event) events.Digest {
	entries := make([]entry, len(evs))
	for i, ev := range evs {
		entries[i] = entryOf(ev)
	}
	return digestOf(entries)
}

// Range collects the stored events after the last digest, so the next digest can be cut
// without reading them again. The zero value starts at sequence 1.
type Range struct {
	covered uint64 // the last sequence a digest covers
	entries []entry
}

// Reset drops everything and makes the range start after covered (the last digest's LastSeq).
func (r *Range) Reset(covered uint64) {
	r.covered, r.entries = covered, r.entries[:0]
}

// Covered is the last sequence the previous digest covers.
func (r *Range) Covered() uint64 { return r.covered }

// Next is the sequence the range expects next (events must be added without gaps).
func (r *Range) Next() uint64 {
	if n := len(r.entries); n > 0 {
		return r.entries[n-1].seq + 1
	}
	return r.covered + 1
}

// Add appends a stored event; one at or below the covered sequence or already added is ignored.
func (r *Range) Add(ev *events.Event) {
	if ev.Seq < r.Next() {
		return
	}
	r.entries = append(r.entries, entryOf(ev))
}

// Len is the number of events not yet covered by a digest.
func (r *Range) Len() int { return len(r.entries) }

// Cut is the digest over the first max events of the range (all when max <= 0); it does not
// change the range: call Reset with its LastSeq once the digest is stored.
func (r *Range) Cut(max int) events.Digest {
	n := len(r.entries)
	if max > 0 && max < n {
		n = max
	}
	return digestOf(r.entries[:n])
}

// Through is the digest over the events of the range up to and including seq.
func (r *Range) Through(seq uint64) events.Digest {
	n := 0
	for n < len(r.entries) && r.entries[n].seq <= seq {
		n++
	}
	return digestOf(r.entries[:n])
}

// CoverThrough drops the events up to and including seq (a digest stored by anyone).
func (r *Range) CoverThrough(seq uint64) {
	if seq <= r.covered {
		return
	}
	i := 0
	for i < len(r.entries) && r.entries[i].seq <= seq {
		i++
	}
	r.entries = append(r.entries[:0], r.entries[i:]...)
	r.covered = seq
}
