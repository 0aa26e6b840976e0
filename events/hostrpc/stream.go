// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// Streamed output. A router that wants a call's output while the call runs (exec,
// install_packages, process_wait) picks a fresh stream id (NewStreamID), subscribes to
// StreamSubject(host, id) and only then sends the request with the id in HeaderStream. The host publishes the
// output there as Chunks, numbered from 1 in the order it was produced, then replies as usual
// with HeaderStreamChunks saying how many chunks it published. The reply stays authoritative:
// chunks are a preview, and a lost chunk loses nothing the reply holds.
//
// A host publishes only under waggle.stream.<its id>.>, and routers subscribe to
// waggle.stream.*.>: the broker's permissions can say exactly that.
const (
	// HeaderStream on a request carries the stream id (see NewStreamID).
	HeaderStream = "Waggle-Stream"
	// HeaderStreamChunks on a reply carries the number of chunks the host published.
	HeaderStreamChunks = "Waggle-Stream-Chunks"
	// MaxChunkBytes bounds the data of one chunk.
	MaxChunkBytes = 16 << 10
)

// Names of the two output streams of a command.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Headers of a chunk message; its body is the raw output bytes.
const (
	headerSeq = "Waggle-Seq"
	headerFd  = "Waggle-Fd"
)

// ErrBadChunk reports a chunk message that does not follow the format.
var ErrBadChunk = errors.New("invalid output chunk")

// NewStreamID is a fresh stream id: an upper-case ULID (26 characters of Crockford base32),
// so that one call's subject cannot be guessed from another's.
func NewStreamID() string { return ulid.Make().String() }

// ValidStreamID reports whether id is a stream id NewStreamID could have made; only such ids
// become subject tokens.
func ValidStreamID(id string) error {
	if _, err := ulid.ParseStrict(id); err != nil || id != strings.ToUpper(id) {
		return fmt.Errorf("invalid stream id %q: want a ULID of 26 upper-case characters", id)
	}
	return nil
}

// Chunk is a piece of a command's output.
type Chunk struct {
	Seq    uint64 // 1, 2, ... in the order the output was produced, over both streams
	Stream string // Stdout or Stderr
	Data   []byte
}

// Msg is the chunk as a message on subject.
func (c Chunk) Msg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(headerSeq, strconv.FormatUint(c.Seq, 10))
	m.Header.Set(headerFd, c.Stream)
	m.Data = c.Data
	return m
}

// ParseChunk reads a chunk message, refusing one that does not follow the format (a sequence
// number from 1, a known stream, at most MaxChunkBytes of data).
func ParseChunk(m *nats.Msg) (Chunk, error) {
	seq, err := strconv.ParseUint(m.Header.Get(headerSeq), 10, 64)
	if err != nil || seq == 0 {
		return Chunk{}, fmt.Errorf("%w: sequence %q", ErrBadChunk, m.Header.Get(headerSeq))
	}
	c := Chunk{Seq: seq, Stream: m.Header.Get(headerFd), Data: m.Data}
	switch {
	case c.Stream != Stdout && c.Stream != Stderr:
		return Chunk{}, fmt.Errorf("%w: stream %q, want %s or %s", ErrBadChunk, c.Stream, Stdout, Stderr)
	case len(c.Data) > MaxChunkBytes:
		return Chunk{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadChunk, len(c.Data), MaxChunkBytes)
	}
	return c, nil
}

// ChunkCount reads HeaderStreamChunks of a reply: 0 when it is absent or invalid.
func ChunkCount(reply *nats.Msg) uint64 {
	if reply.Header == nil {
		return 0
	}
	n, err := strconv.ParseUint(reply.Header.Get(HeaderStreamChunks), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
