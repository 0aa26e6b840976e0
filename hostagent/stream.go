// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"io"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// streamDelay is how long output waits for more before it is published as a chunk: short
// enough that a line reaches the caller at once, long enough that a burst of small writes
// becomes one message.
const streamDelay = 20 * time.Millisecond

// outputStream publishes one call's output as hostrpc chunks on the subject its router
// subscribed to (see hostrpc.HeaderStream). Writes of one stream in a row are gathered for up
// to streamDelay or hostrpc.MaxChunkBytes; a write of the other stream publishes what is
// gathered first, so chunks keep the order of the output. Publishing never blocks the command.
type outputStream struct {
	nc      *nats.Conn
	subject string
	logger  *slog.Logger
	stdout  *streamWriter
	stderr  *streamWriter

	mu     sync.Mutex
	seq    uint64 // chunks published
	fd     string // stream of buf
	buf    []byte
	timer  *time.Timer // publishes buf after streamDelay; nil when none is pending
	closed bool
}

// streamWriter is one stream (stdout or stderr) of an outputStream.
type streamWriter struct {
	s  *outputStream
	fd string
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.s.write(w.fd, p)
	return len(p), nil
}

// openStream is the output stream a call asked for in its header, nil when it asked for none.
// An id that is not a stream id is the caller's mistake.
func (a *Agent) openStream(host, id string) (*outputStream, error) {
	if id == "" {
		return nil, nil
	}
	if err := hostrpc.ValidStreamID(id); err != nil {
		return nil, rpcErrorf(hostrpc.CodeBadRequest, "header %s: %v", hostrpc.HeaderStream, err)
	}
	s := &outputStream{nc: a.nc, subject: hostrpc.StreamSubject(host, id), logger: a.logger}
	s.stdout, s.stderr = &streamWriter{s: s, fd: hostrpc.Stdout}, &streamWriter{s: s, fd: hostrpc.Stderr}
	return s, nil
}

// writers are the stream's stdout and stderr; a nil stream has none, so a command without a
// stream writes its output only to its result.
func (s *outputStream) writers() (stdout, stderr io.Writer) {
	if s == nil {
		return nil, nil
	}
	return s.stdout, s.stderr
}

func (s *outputStream) write(fd string, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(p) == 0 {
		return
	}
	if fd != s.fd && len(s.buf) > 0 {
		s.publish(len(s.buf))
	}
	s.fd = fd
	s.buf = append(s.buf, p...)
	for len(s.buf) >= hostrpc.MaxChunkBytes {
		s.publish(hostrpc.MaxChunkBytes - incompleteTail(s.buf[:hostrpc.MaxChunkBytes]))
	}
	if len(s.buf) > 0 && s.timer == nil {
		s.timer = time.AfterFunc(streamDelay, s.flush)
	}
}

// flush publishes what has gathered, keeping back the start of a UTF-8 character whose rest
// is still to come (the chunk's text then reads whole).
func (s *outputStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if s.closed || len(s.buf) == 0 {
		return
	}
	if n := len(s.buf) - incompleteTail(s.buf); n > 0 {
		s.publish(n)
	}
	if len(s.buf) > 0 {
		s.timer = time.AfterFunc(streamDelay, s.flush)
	}
}

// publish sends the first n bytes of buf as the next chunk; s.mu is held.
func (s *outputStream) publish(n int) {
	s.seq++
	c := hostrpc.Chunk{Seq: s.seq, Stream: s.fd, Data: append([]byte(nil), s.buf[:n]...)}
	s.buf = append(s.buf[:0], s.buf[n:]...)
	if err := s.nc.PublishMsg(c.Msg(s.subject)); err != nil {
		// The reply still carries the output; the router sees the gap.
		s.logger.Debug("rpc: output chunk not published", "subject", s.subject, "seq", c.Seq, "err", err)
	}
}

// close publishes what is left and returns the number of chunks published; later writes are
// dropped.
func (s *outputStream) close() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !s.closed && len(s.buf) > 0 {
		s.publish(len(s.buf))
	}
	s.closed = true
	return s.seq
}

// incompleteTail is the number of bytes at the end of b that start a UTF-8 character but do
// not complete it (0 to 3).
func incompleteTail(b []byte) int {
	for i := 1; i <= min(len(b), utf8.UTFMax-1); i++ {
		c := b[len(b)-i]
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return i
			}
			return 0
		}
	}
	return 0
}
