// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// progressNote is one notifications/progress a client received.
type progressNote struct {
	token    any
	progress float64
	message  string
	at       time.Time
}

// progressLog collects the progress notifications of a client.
type progressLog struct {
	mu    sync.Mutex
	notes []progressNote
}

func (m *mcpClient) followProgress() *progressLog {
	l := &progressLog{}
	m.c.OnNotification(func(n mcpgo.JSONRPCNotification) {
		if n.Method != string(mcpgo.MethodNotificationProgress) {
			return
		}
		f := n.Params.AdditionalFields
		note := progressNote{token: f["progressToken"], at: time.Now()}
		note.progress, _ = f["progress"].(float64)
		note.message, _ = f["message"].(string)
		l.mu.Lock()
		l.notes = append(l.notes, note)
		l.mu.Unlock()
	})
	return l
}

// take returns the notifications received so far for token and forgets them.
func (l *progressLog) take(token any) []progressNote {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []progressNote
	l.notes = slices.DeleteFunc(l.notes, func(n progressNote) bool {
		if n.token == token {
			out = append(out, n)
			return true
		}
		return false
	})
	return out
}

// callWithProgress calls tool with a progress token (none if token is nil) and returns the
// result's text, whether it is a tool error, and when the result arrived.
func (m *mcpClient) callWithProgress(tool string, args map[string]any, token any) (string, bool, time.Time) {
	m.t.Helper()
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = tool, args
	if token != nil {
		req.Params.Meta = &mcpgo.Meta{ProgressToken: token}
	}
	res, err := m.c.CallTool(m.ctx, req)
	if err != nil {
		m.t.Fatalf("%s(%v): %v", tool, args, err)
	}
	text, _ := res.Content[0].(mcpgo.TextContent)
	return text.Text, res.IsError, time.Now()
}

// checkStreamed checks that notes carry want (stream: text, in order) with rising progress,
// and that the first came well before the result (while the command ran).
func checkStreamed(t *testing.T, notes []progressNote, want []string, result time.Time) {
	t.Helper()
	var got []string
	for i, n := range notes {
		got = append(got, n.message)
		if n.progress != float64(i+1) {
			t.Errorf("notification %d has progress %v, want %d", i, n.progress, i+1)
		}
		if n.at.After(result) {
			t.Errorf("notification %q arrived after the result", n.message)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("progress messages %q, want %q", got, want)
	}
	if lead := result.Sub(notes[0].at); lead < 150*time.Millisecond {
		t.Errorf("first notification only %s before the result: not streamed while the command ran", lead)
	}
}

// TestProgressFakeHost streams an execute's output as notifications/progress through two
// router replicas in turn (stateless Streamable HTTP: each response becomes an SSE stream),
// and checks who gets no notifications: calls without a token, tools that stream nothing, and
// a tenant calling on an environment that is not its own.
func TestProgressFakeHost(t *testing.T) {
	c := newCluster(t, 2, nil, hostStarts)
	cl := c.client(c.key("acme"), "")
	notes := cl.followProgress()
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	code := "stream\n1>one\n2>warn\n1>two\n"
	want := []string{"stdout: one\n", "stderr: warn\n", "stdout: two\n"}

	for i, token := range []any{"tok-a", 42.0} { // one call through each router; tokens may be numbers
		text, isErr, at := cl.callWithProgress(toolExecute, envArgs(env.ID, "code", code), token)
		var res execResult
		if isErr || json.Unmarshal([]byte(text), &res) != nil || res.Stdout != "one\ntwo\n" || res.Stderr != "warn\n" {
			t.Fatalf("call %d: execute with progress: %s", i, text)
		}
		checkStreamed(t, notes.take(token), want, at)
	}

	cl.callWithProgress(toolExecute, envArgs(env.ID, "code", code), nil)
	cl.callWithProgress(toolRead, envArgs(env.ID, "path", "/home/sandbox/x"), "tok-read")
	other := c.client(c.key("other"), "")
	otherNotes := other.followProgress()
	if text, isErr, _ := other.callWithProgress(toolExecute, envArgs(env.ID, "code", code), "tok-other"); !isErr {
		t.Errorf("another tenant's execute: %s, want not found", text)
	}
	time.Sleep(500 * time.Millisecond)
	if n := append(notes.take("tok-read"), otherNotes.take("tok-other")...); len(n) > 0 {
		t.Errorf("notifications nobody should get: %+v", n)
	}
	notes.mu.Lock()
	defer notes.mu.Unlock()
	if len(notes.notes) > 0 {
		t.Errorf("notifications for a call without a progress token: %+v", notes.notes)
	}
}

// TestProgressRealAgent streams execute and wait_process output from the real host agent
// (in-memory VMs that print a line every 100 ms) through MCP.
func TestProgressRealAgent(t *testing.T) {
	c := newCluster(t, 2, nil)
	startRealAgent(t, c, "real-1")
	cl := c.client(c.key("acme"), "")
	notes := cl.followProgress()
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	want := []string{"stdout: tick 0\n", "stdout: tick 1\n", "stdout: tick 2\n", "stderr: warn\n"}

	text, isErr, at := cl.callWithProgress(toolExecute, envArgs(env.ID, "code", "drip()"), "exec")
	if isErr {
		t.Fatal(text)
	}
	checkStreamed(t, notes.take("exec"), want, at)

	var started struct {
		ID string `json:"process_id"`
	}
	cl.ok(toolStart, envArgs(env.ID, "code", "drip()"), &started)
	text, isErr, at = cl.callWithProgress(toolWaitProc, envArgs(env.ID, argProcess, started.ID), "wait")
	if isErr {
		t.Fatal(text)
	}
	// wait_process streams what comes while it waits: the ticks after its start.
	if got := notes.take("wait"); len(got) == 0 || got[len(got)-1].message != "stderr: warn\n" || got[0].at.After(at) {
		t.Errorf("wait_process notifications %+v", got)
	}
}
