// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

func testLogger() *slog.Logger {
	if os.Getenv("WAGGLE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is a fast-ticking agent config for host.
func testConfig(t testing.TB, host string) Config {
	cfg := DefaultConfig()
	cfg.HostID = host
	cfg.DataDir = t.TempDir()
	cfg.TouchInterval = 200 * time.Millisecond
	cfg.TTLCheckInterval = 50 * time.Millisecond
	cfg.AckWait = 3 * time.Second
	cfg.Logger = testLogger()
	return cfg
}

// runAgent runs an agent until the test ends (or stop is called) and checks it stops cleanly.
func runAgent(t testing.TB, c *eventstest.Node, cfg Config, m Machines) (a *Agent, stop func()) {
	t.Helper()
	return runAgentOn(t, c, c.Log, cfg, m)
}

// runAgentOn is runAgent with the agent appending and reading through log.
func runAgentOn(t testing.TB, c *eventstest.Node, log EventLog, cfg Config, m Machines) (a *Agent, stop func()) {
	t.Helper()
	a, err := New(cfg, log, c.NC, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent %s: Run: %v", cfg.HostID, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent %s did not stop", cfg.HostID)
		}
	}
	t.Cleanup(stop)
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent %s: Run: %v", cfg.HostID, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s not ready", cfg.HostID)
	}
	return a, stop
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newEnvID() string { return strings.ToLower(ulid.Make().String()) }

// appendEnv appends events to an environment as a router would (requested, placed, ...).
func appendEnv(t testing.TB, c *eventstest.Node, host, env string, evs ...*events.Event) {
	t.Helper()
	ctx := context.Background()
	head, err := c.Log.Head(ctx, events.EnvAggregate(host, env))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if head, err = c.Log.Append(ctx, ev, head); err != nil {
			t.Fatal(err)
		}
	}
}

func mustEvent(t testing.TB, host, env, typ string, data any) *events.Event {
	t.Helper()
	ev, err := events.NewEnvEvent(host, env, typ, "tenant-1", data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// place requests and places an environment on host.
func place(t testing.TB, c *eventstest.Node, host, env string, req events.Requested) {
	t.Helper()
	if req.Runtime == "" {
		req.Runtime = "python"
	}
	appendEnv(t, c, host, env, mustEvent(t, host, env, events.EnvRequested, req),
		mustEvent(t, host, env, events.EnvPlaced, events.Placed{Host: host}))
}

func history(t testing.TB, c *eventstest.Node, host, env string) []*events.Event {
	t.Helper()
	evs, _, err := c.Log.Load(context.Background(), events.EnvAggregate(host, env))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func state(t testing.TB, c *eventstest.Node, host, env string) string {
	t.Helper()
	e, err := events.FoldEnv(history(t, c, host, env))
	if err != nil {
		t.Fatal(err)
	}
	s := e.State
	return s
}

func waitState(t testing.TB, c *eventstest.Node, host, env, want string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, env+" in state "+want, func() bool { return state(t, c, host, env) == want })
}

func countType(evs []*events.Event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func lastOf(evs []*events.Event, typ string) *events.Event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i]
		}
	}
	return nil
}

// call sends one RPC to host as principal and decodes the reply into out, or returns the
// reply's error.
func call(t testing.TB, nc *nats.Conn, host, op string, req, out any) *hostrpc.Error {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(hostrpc.Subject(host, op))
	msg.Data = body
	msg.Header.Set(hostrpc.HeaderPrincipal, "tenant-1/key-1")
	msg.Header.Set(hostrpc.HeaderCorrelation, "req-1")
	reply, err := nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
		var e hostrpc.Error
		if err := json.Unmarshal(reply.Data, &e); err != nil {
			t.Fatalf("%s: error reply %q: %v", op, reply.Data, err)
		}
		if e.Code != code {
			t.Fatalf("%s: header code %q, body code %q", op, code, e.Code)
		}
		return &e
	}
	if out != nil {
		if err := json.Unmarshal(reply.Data, out); err != nil {
			t.Fatalf("%s: reply %q: %v", op, reply.Data, err)
		}
	}
	return nil
}
