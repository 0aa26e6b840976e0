// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeQEMU serves QMP on a unix socket: the greeting, then one scripted reply per command.
// It reports each command and whether a descriptor came with it.
type fakeCommand struct {
	Execute string          `json:"execute"`
	Args    json.RawMessage `json:"arguments"`
	ID      string          `json:"id"`
	gotFD   bool
}

func fakeQEMU(t *testing.T, reply func(c fakeCommand) []string) (string, <-chan fakeCommand) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cmds := make(chan fakeCommand, 16)
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		w := bufio.NewWriter(conn) // write errors surface as the client's read errors
		_, _ = w.WriteString(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}` + "\n")
		_ = w.Flush()
		buf, oob := make([]byte, 4096), make([]byte, 128)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			var c fakeCommand
			if json.Unmarshal(buf[:n], &c) != nil {
				return
			}
			if msgs, _ := unix.ParseSocketControlMessage(oob[:oobn]); len(msgs) > 0 {
				if fds, _ := unix.ParseUnixRights(&msgs[0]); len(fds) > 0 {
					c.gotFD = true
					for _, fd := range fds {
						unix.Close(fd)
					}
				}
			}
			cmds <- c
			for _, line := range reply(c) {
				_, _ = w.WriteString(strings.ReplaceAll(line, "ID", c.ID) + "\n")
			}
			_ = w.Flush()
		}
	}()
	return path, cmds
}

func TestQMP(t *testing.T) {
	path, cmds := fakeQEMU(t, func(c fakeCommand) []string {
		switch c.Execute {
		case "query-status":
			return []string{`{"event": "STOP", "timestamp": {}}`, `{"return": {"status": "old"}, "id": "stale"}`,
				`{"return": {"status": "paused"}, "id": "ID"}`}
		case "cont":
			return []string{`{"error": {"class": "GenericError", "desc": "no"}, "id": "ID"}`}
		case "bogus":
			return []string{`{"id": "ID"}`}
		}
		return []string{`{"return": {}, "id": "ID"}`}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if c := <-cmds; c.Execute != "qmp_capabilities" {
		t.Fatalf("first command %q", c.Execute)
	}
	var st struct{ Status string }
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "paused" {
		t.Errorf("query-status: %+v %v (events and stale replies must be skipped)", st, err)
	}
	<-cmds
	var qe *QMPError
	if err := q.Execute(ctx, "cont", nil, nil); !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Desc != "no" {
		t.Errorf("cont: %v, want a QMPError", err)
	}
	<-cmds
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := q.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "x"}, nil, f); err != nil {
		t.Fatal(err)
	}
	if c := <-cmds; !c.gotFD || string(c.Args) != `{"fdname":"x"}` {
		t.Errorf("getfd: %+v", c)
	}
	if err := q.Execute(ctx, "bogus", nil, nil); !errors.Is(err, ErrBadQMPReply) {
		t.Errorf("reply without return: %v, want ErrBadQMPReply", err)
	}
}

func TestDialQMPWaitsAndGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := DialQMP(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial without QEMU: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dial gave up after %s", d)
	}
}

func FuzzDecodeQMPReply(f *testing.F) {
	f.Add([]byte(`{"return": {}, "id": "1"}`))
	f.Add([]byte(`{"error": {"class": "GenericError", "desc": "x"}}`))
	f.Add([]byte(`{"event": "STOP"}`))
	f.Add([]byte(`{"return": null}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeQMPReply(line)
		if err != nil {
			if !errors.Is(err, ErrBadQMPReply) {
				t.Fatalf("error %v does not wrap ErrBadQMPReply", err)
			}
			return
		}
		if r.Event == "" && r.Error == nil && r.Return == nil {
			t.Fatalf("accepted %q with nothing in it", line)
		}
	})
}
