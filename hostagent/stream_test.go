// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// chunkSink collects the chunks published on one stream subject.
type chunkSink struct {
	t    *testing.T
	msgs chan *nats.Msg
}

func subscribeChunks(t *testing.T, nc *nats.Conn, subject string) *chunkSink {
	t.Helper()
	s := &chunkSink{t: t, msgs: make(chan *nats.Msg, 1024)}
	sub, err := nc.ChanSubscribe(subject, s.msgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// next waits for the next chunk.
func (s *chunkSink) next() hostrpc.Chunk {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		c, err := hostrpc.ParseChunk(m)
		if err != nil {
			s.t.Fatal(err)
		}
		return c
	case <-time.After(5 * time.Second):
		s.t.Fatal("no chunk within 5 s")
	}
	return hostrpc.Chunk{}
}

// none checks that no chunk arrives for a while.
func (s *chunkSink) none(d time.Duration) {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		s.t.Fatalf("unexpected chunk %q", m.Data)
	case <-time.After(d):
	}
}

func TestOutputStream(t *testing.T) {
	c := eventstest.Start(t)
	a := &Agent{nc: c.NC, logger: testLogger()}
	id := hostrpc.NewStreamID()
	sink := subscribeChunks(t, c.NC, hostrpc.StreamSubject("h1", id))
	s, err := a.openStream("h1", id)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := s.writers()
	want := func(seq uint64, fd, data string) {
		t.Helper()
		if got := sink.next(); got.Seq != seq || got.Stream != fd || string(got.Data) != data {
			t.Fatalf("chunk %d %s %q, want %d %s %q", got.Seq, got.Stream, got.Data, seq, fd, data)
		}
	}

	// Writes in a row become one chunk; the other stream's write publishes them first.
	_, _ = stdout.Write([]byte("a"))
	_, _ = stdout.Write([]byte("b\n"))
	_, _ = stderr.Write([]byte("oops\n"))
	_, _ = stdout.Write([]byte("c"))
	want(1, hostrpc.Stdout, "ab\n")
	want(2, hostrpc.Stderr, "oops\n")
	want(3, hostrpc.Stdout, "c")

	// A character split across writes is held back until it is whole.
	e := []byte("é")
	_, _ = stdout.Write(e[:1])
	sink.none(5 * streamDelay)
	_, _ = stdout.Write(e[1:])
	want(4, hostrpc.Stdout, "é")

	// A large write is cut into chunks of at most MaxChunkBytes, in order.
	big := bytes.Repeat([]byte("0123456789"), 4000)
	_, _ = stdout.Write(big)
	var got []byte
	seq := uint64(5)
	for ; len(got) < len(big); seq++ {
		ch := sink.next()
		if ch.Seq != seq || len(ch.Data) > hostrpc.MaxChunkBytes {
			t.Fatalf("chunk %d of %d bytes, want chunk %d", ch.Seq, len(ch.Data), seq)
		}
		got = append(got, ch.Data...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("large write arrived altered")
	}

	// close publishes the rest at once, even half a character, and counts every chunk.
	_, _ = stderr.Write([]byte("end" + string(e[:1])))
	if n := s.close(); n != seq {
		t.Errorf("close: %d chunks, want %d", n, seq)
	}
	want(seq, hostrpc.Stderr, "end"+string(e[:1]))
	_, _ = stdout.Write([]byte("late"))
	sink.none(5 * streamDelay)

	if _, err := a.openStream("h1", "not.a.stream.id"); err == nil || !strings.Contains(err.Error(), hostrpc.HeaderStream) {
		t.Errorf("invalid stream id: %v", err)
	}
	if s, err := a.openStream("h1", ""); s != nil || err != nil {
		t.Errorf("no stream asked for: %v %v", s, err)
	}
}

func TestIncompleteTail(t *testing.T) {
	e, euro := "é", "€"
	for in, want := range map[string]int{"": 0, "abc": 0, e: 0, e[:1]: 1, "a" + euro[:2]: 2, euro[:1]: 1, "\xff": 0, "a\x80": 0} {
		if got := incompleteTail([]byte(in)); got != want {
			t.Errorf("incompleteTail(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestRPCStreams runs exec, install_packages and process_wait with an output stream: the
// chunks carry the output in order while the call runs, the reply counts them, a call without
// the header streams nothing, and an invalid stream id is refused.
func TestRPCStreams(t *testing.T) {
	c := eventstest.Start(t)
	runAgent(t, c, testConfig(t, "h1"), newFakeMachines())
	env := newEnvID()
	place(t, c, "h1", env, events.Requested{Runtime: "python"})
	waitState(t, c, "h1", env, events.StateRunning, 10*time.Second)

	// request sends op with stream id (none if ""), returning the reply.
	request := func(op, stream string, req any) *nats.Msg {
		t.Helper()
		body, _ := json.Marshal(req)
		msg := nats.NewMsg(hostrpc.Subject("h1", op))
		msg.Data = body
		if stream != "" {
			msg.Header.Set(hostrpc.HeaderStream, stream)
		}
		reply, err := c.NC.RequestMsg(msg, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	collect := func(sink *chunkSink, n uint64) (stdout, stderr string) {
		t.Helper()
		for seq := uint64(1); seq <= n; seq++ {
			ch := sink.next()
			if ch.Seq != seq {
				t.Fatalf("chunk %d, want %d", ch.Seq, seq)
			}
			if ch.Stream == hostrpc.Stdout {
				stdout += string(ch.Data)
			} else {
				stderr += string(ch.Data)
			}
		}
		sink.none(5 * streamDelay)
		return stdout, stderr
	}

	t.Run("exec", func(t *testing.T) {
		id := hostrpc.NewStreamID()
		sink := subscribeChunks(t, c.NC, hostrpc.StreamSubject("h1", id))
		reply := request(hostrpc.OpExec, id, hostrpc.ExecRequest{Env: env, Code: "drip 3"})
		var res hostrpc.ExecResult
		if err := json.Unmarshal(reply.Data, &res); err != nil {
			t.Fatal(err)
		}
		n := hostrpc.ChunkCount(reply)
		stdout, stderr := collect(sink, n)
		if n < 2 || stdout != res.Stdout || stderr != res.Stderr || !strings.Contains(stdout, "tick 2\n") {
			t.Fatalf("%d chunks: stdout %q stderr %q; result %+v", n, stdout, stderr, res)
		}
	})
	t.Run("install", func(t *testing.T) {
		id := hostrpc.NewStreamID()
		sink := subscribeChunks(t, c.NC, hostrpc.StreamSubject("h1", id))
		reply := request(hostrpc.OpInstallPackages, id, hostrpc.InstallRequest{Env: env, Packages: []string{"requests"}})
		if _, stderr := collect(sink, hostrpc.ChunkCount(reply)); !strings.Contains(stderr, "requests") {
			t.Fatalf("install streamed stderr %q, want the pip command line", stderr)
		}
	})
	t.Run("process_wait", func(t *testing.T) {
		var started hostrpc.ProcessStartResult
		if e := call(t, c.NC, "h1", hostrpc.OpProcessStart, hostrpc.ProcessStartRequest{Env: env, Code: "drip 6"}, &started); e != nil {
			t.Fatal(e)
		}
		id := hostrpc.NewStreamID()
		sink := subscribeChunks(t, c.NC, hostrpc.StreamSubject("h1", id))
		reply := request(hostrpc.OpProcessWait, id, hostrpc.ProcessRequest{Env: env, ProcessID: started.ProcessID, Timeout: 5 * time.Second})
		var res hostrpc.ProcessResult
		if err := json.Unmarshal(reply.Data, &res); err != nil || res.Running {
			t.Fatalf("wait: %+v %v", res, err)
		}
		// Only what came while the call waited streams; the result has everything.
		stdout, _ := collect(sink, hostrpc.ChunkCount(reply))
		if stdout == "" || !strings.HasSuffix(res.Stdout, stdout) || !strings.HasSuffix(stdout, "tick 5\n") {
			t.Fatalf("wait streamed %q; result stdout %q", stdout, res.Stdout)
		}
	})
	t.Run("no stream asked for", func(t *testing.T) {
		reply := request(hostrpc.OpExec, "", hostrpc.ExecRequest{Env: env, Code: "print(1)"})
		if reply.Header.Get(hostrpc.HeaderStreamChunks) != "" {
			t.Fatalf("reply without a stream counts chunks: %v", reply.Header)
		}
	})
	t.Run("invalid stream id", func(t *testing.T) {
		for _, bad := range []string{"*", ">", "x.y", strings.ToLower(hostrpc.NewStreamID())} {
			reply := request(hostrpc.OpExec, bad, hostrpc.ExecRequest{Env: env, Code: "print(1)"})
			var e hostrpc.Error
			_ = json.Unmarshal(reply.Data, &e)
			if e.Code != hostrpc.CodeBadRequest || !strings.Contains(e.Message, hostrpc.HeaderStream) {
				t.Errorf("stream id %q: %+v, want bad_request naming the header", bad, e)
			}
		}
	})
}
