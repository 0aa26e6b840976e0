// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestChunkRoundTrip(t *testing.T) {
	for _, c := range []Chunk{
		{Seq: 1, Stream: Stdout, Data: []byte("hello\n")},
		{Seq: 1 << 40, Stream: Stderr, Data: []byte{0, 0xff, '\n'}},
		{Seq: 7, Stream: Stdout, Data: bytes.Repeat([]byte("x"), MaxChunkBytes)},
	} {
		m := c.Msg(StreamSubject("h1", NewStreamID()))
		got, err := ParseChunk(m)
		if err != nil || got.Seq != c.Seq || got.Stream != c.Stream || !bytes.Equal(got.Data, c.Data) {
			t.Fatalf("ParseChunk(Msg(%d %s)) = %d %s %v", c.Seq, c.Stream, got.Seq, got.Stream, err)
		}
	}
}

func TestParseChunkRefuses(t *testing.T) {
	msg := func(seq, fd string, data []byte) *nats.Msg {
		m := nats.NewMsg("waggle.stream.h1.x")
		m.Header.Set(headerSeq, seq)
		m.Header.Set(headerFd, fd)
		m.Data = data
		return m
	}
	for name, m := range map[string]*nats.Msg{
		"no headers":     {Subject: "waggle.stream.h1.x", Data: []byte("x")},
		"sequence 0":     msg("0", Stdout, nil),
		"negative":       msg("-1", Stdout, nil),
		"not a number":   msg("one", Stdout, nil),
		"unknown stream": msg("1", "stdin", nil),
		"too large":      msg("1", Stderr, make([]byte, MaxChunkBytes+1)),
	} {
		if _, err := ParseChunk(m); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: err %v, want ErrBadChunk", name, err)
		}
	}
}

func TestStreamIDs(t *testing.T) {
	id := NewStreamID()
	if err := ValidStreamID(id); err != nil {
		t.Fatalf("NewStreamID %q: %v", id, err)
	}
	if NewStreamID() == id {
		t.Fatal("two stream ids alike")
	}
	// Only ids that are one plain subject token pass.
	for _, bad := range []string{"", "x", strings.ToLower(id), id + "0", "*", ">", "01ARZ3NDEKTSV4RRFFQ69G5FA.", "01ARZ3NDEKTSV4RRFFQ69G5F>V"} {
		if err := ValidStreamID(bad); err == nil {
			t.Errorf("ValidStreamID(%q) accepted", bad)
		}
	}
	if got := StreamSubject("h1", id); got != "waggle.stream.h1."+id {
		t.Errorf("StreamSubject: %q", got)
	}
}

func TestChunkCount(t *testing.T) {
	for v, want := range map[string]uint64{"": 0, "3": 3, "x": 0, "-2": 0} {
		m := nats.NewMsg("r")
		if v != "" {
			m.Header.Set(HeaderStreamChunks, v)
		}
		if got := ChunkCount(m); got != want {
			t.Errorf("ChunkCount(%q) = %d, want %d", v, got, want)
		}
	}
	if got := ChunkCount(&nats.Msg{}); got != 0 {
		t.Errorf("ChunkCount without headers = %d", got)
	}
}

func FuzzParseChunk(f *testing.F) {
	f.Add("1", Stdout, []byte("hi"))
	f.Add("18446744073709551615", Stderr, []byte{0xff})
	f.Add("0", "x", []byte(nil))
	f.Fuzz(func(t *testing.T, seq, fd string, data []byte) {
		m := nats.NewMsg("s")
		m.Header.Set(headerSeq, seq)
		m.Header.Set(headerFd, fd)
		m.Data = data
		c, err := ParseChunk(m)
		if err != nil {
			return
		}
		if c.Seq == 0 || (c.Stream != Stdout && c.Stream != Stderr) || len(c.Data) > MaxChunkBytes {
			t.Fatalf("ParseChunk accepted %+v", c)
		}
	})
}
