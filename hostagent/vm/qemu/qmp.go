// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// QMP is a connection to QEMU's machine protocol (one JSON object per line). QEMU runs the
// guest, so its replies are untrusted input: lines are bounded and decoded strictly.
type QMP struct {
	conn *net.UnixConn
	r    *bufio.Reader

	mu  sync.Mutex // one command at a time
	seq int
}

// QMPError is an error reply from QEMU.
type QMPError struct {
	Command string
	Class   string
	Desc    string
}

func (e *QMPError) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

// maxQMPLine bounds one line from QEMU.
const maxQMPLine = 1 << 20

// DialQMP connects to the QMP socket at path, reads QEMU's greeting and leaves negotiation
// mode. It retries while the socket does not exist yet or refuses (QEMU is starting).
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			conn = c
			break
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("qmp: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: %w (last: %w)", ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn.(*net.UnixConn), r: bufio.NewReaderSize(conn, 64<<10)}
	stop := context.AfterFunc(ctx, func() { _ = q.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := q.readLine()
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := json.Unmarshal(line, &greeting); err != nil || greeting.QMP == nil {
		q.Close()
		return nil, fmt.Errorf("qmp greeting: unexpected %.200q", line)
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// Execute runs command with args (nil for none) and decodes its return value into result (nil
// to ignore it). An error reply is a *QMPError.
func (q *QMP) Execute(ctx context.Context, command string, args, result any) error {
	return q.execute(ctx, command, args, result, nil)
}

// ExecuteWithFile is Execute with f passed along as SCM_RIGHTS (for getfd and add-fd).
func (q *QMP) ExecuteWithFile(ctx context.Context, command string, args, result any, f *os.File) error {
	return q.execute(ctx, command, args, result, f)
}

func (q *QMP) execute(ctx context.Context, command string, args, result any, f *os.File) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	id := strconv.Itoa(q.seq)
	msg, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id})
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = q.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg = append(msg, '\n')
	if f != nil {
		_, _, err = q.conn.WriteMsgUnix(msg, unix.UnixRights(int(f.Fd())), nil)
	} else {
		_, err = q.conn.Write(msg)
	}
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, ctxErr(ctx, err))
	}
	for {
		line, err := q.readLine()
		if err != nil {
			return fmt.Errorf("qmp %s: %w", command, ctxErr(ctx, err))
		}
		reply, err := DecodeQMPReply(line)
		if err != nil {
			return fmt.Errorf("qmp %s: %w", command, err)
		}
		if reply.Event != "" || reply.ID != id {
			continue // an asynchronous event, or the late reply of a command given up on
		}
		if reply.Error != nil {
			return &QMPError{Command: command, Class: reply.Error.Class, Desc: reply.Error.Desc}
		}
		if result == nil {
			return nil
		}
		if err := json.Unmarshal(reply.Return, result); err != nil {
			return fmt.Errorf("qmp %s: decode reply: %w", command, err)
		}
		return nil
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (q *QMP) readLine() ([]byte, error) {
	var buf []byte
	for {
		chunk, err := q.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxQMPLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxQMPLine)
		}
		switch {
		case err == nil:
			return bytes.TrimSpace(buf), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// QMPReply is one message from QEMU: a command's return value or error, or an event.
type QMPReply struct {
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// ErrBadQMPReply says a line from QEMU is not a QMP message.
var ErrBadQMPReply = errors.New("bad qmp message")

// DecodeQMPReply parses one line from QEMU. It must be an event, an error or a return value.
func DecodeQMPReply(line []byte) (QMPReply, error) {
	var r QMPReply
	if len(line) > maxQMPLine {
		return QMPReply{}, fmt.Errorf("%w: %d bytes", ErrBadQMPReply, len(line))
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return QMPReply{}, fmt.Errorf("%w: %w", ErrBadQMPReply, err)
	}
	if r.Event == "" && r.Error == nil && r.Return == nil {
		return QMPReply{}, fmt.Errorf("%w: neither return, error nor event: %.200q", ErrBadQMPReply, line)
	}
	return r, nil
}
