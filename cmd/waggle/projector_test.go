// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/projector"
)

// waggle runs the CLI with args and returns its output.
func waggle(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

var hashLine = regexp.MustCompile(`view hash ([0-9a-f]{64})`)

func viewHash(t *testing.T, out string) string {
	t.Helper()
	m := hashLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no view hash in:\n%s", out)
	}
	return m[1]
}

// TestViewCommands runs the operator and auditor commands against a real server with a
// projector: the hashes of `env ls --hash`, `replay --at now` and `projector rebuild` agree.
func TestViewCommands(t *testing.T) {
	n := eventstest.Start(t)
	t.Setenv("WAGGLE_NATS_URL", n.Server.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	l := n.Log
	heads := map[string]events.Head{}
	add := func(ev *events.Event, err error) *events.Event {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		agg := events.AggregateOf(ev)
		if heads[agg], err = l.Append(ctx, ev, heads[agg]); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	add(events.NewHostEvent("h1", events.HostJoined, "host:h1", events.HostInfo{Address: "127.0.0.1:7946", CPUs: 8, MemoryMiB: 8192, MaxEnvironments: 10}))
	for i := range 3 {
		env := fmt.Sprintf("e%d", i)
		add(events.NewEnvEvent("h1", env, events.EnvRequested, "acme", events.Requested{Runtime: "python", Owner: "acme", Resources: events.Resources{CPUs: 1, MemoryMiB: 512}, TTLSeconds: 600}))
		add(events.NewEnvEvent("h1", env, events.EnvPlaced, "acme", events.Placed{Host: "h1"}))
		add(events.NewEnvEvent("h1", env, events.EnvStarting, "host:h1", nil))
		add(events.NewEnvEvent("h1", env, events.EnvStarted, "host:h1", events.Started{BootMillis: 2500}))
	}
	mid := add(events.NewEnvEvent("h1", "e0", events.EnvExec, "acme", events.Exec{Language: "python", CodeSHA256: "c0ffee", ExitCode: 7}))
	time.Sleep(5 * time.Millisecond)
	midTime := time.Now()
	time.Sleep(5 * time.Millisecond)
	add(events.NewEnvEvent("h1", "e1", events.EnvDestroyRequested, "acme", events.DestroyRequested{By: "acme", Reason: events.ReasonUser}))
	last := add(events.NewEnvEvent("h1", "e1", events.EnvDestroyed, "host:h1", nil))

	cfg := projector.DefaultConfig()
	cfg.Name, cfg.Logger, cfg.DigestEvery, cfg.DigestInterval = "cli", slog.New(slog.DiscardHandler), 5, 50*time.Millisecond
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	proj, err := projector.New(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- proj.Run(pctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	r, _ := projector.NewReader(l.JetStream())
	for {
		if seq, _ := r.Freshness(ctx); seq >= last.Seq {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	out, err := waggle(t, "env", "ls", "--hash")
	if err != nil || !strings.Contains(out, "e2") || !strings.Contains(out, "destroyed") {
		t.Fatalf("env ls: %v\n%s", err, out)
	}
	live := viewHash(t, out)
	out, err = waggle(t, "replay", "--at", time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil || viewHash(t, out) != live {
		t.Fatalf("replay now: %v (live hash %s)\n%s", err, live, out)
	}
	out, err = waggle(t, "replay", "--at", midTime.UTC().Format(time.RFC3339Nano), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var replayed struct {
		Seq  uint64           `json:"seq"`
		Envs []*projector.Env `json:"envs"`
	}
	if err := json.Unmarshal([]byte(out), &replayed); err != nil || replayed.Seq != mid.Seq || replayed.Envs[1].State != events.StateRunning {
		t.Fatalf("replay at mid: %v seq %d want %d\n%s", err, replayed.Seq, mid.Seq, out)
	}
	out, err = waggle(t, "projector", "rebuild")
	if err != nil || viewHash(t, out) != live {
		t.Fatalf("rebuild: %v (live hash %s)\n%s", err, live, out)
	}
	out, err = waggle(t, "env", "ls", "--tenant", "acme", "--host", "h1", "--json", "--hash")
	if err != nil || !strings.Contains(out, `"hash": "`+live+`"`) {
		t.Fatalf("env ls --json after rebuild: %v\n%s", err, out)
	}
	out, err = waggle(t, "env", "get", "e0")
	if err != nil || !strings.Contains(out, "state:        running") || !strings.Contains(out, "exec") {
		t.Fatalf("env get: %v\n%s", err, out)
	}
	if _, err := waggle(t, "env", "get", "nope"); err == nil {
		t.Fatal("env get of an unknown environment succeeded")
	}
	out, err = waggle(t, "hosts", "ls")
	if err != nil || !strings.Contains(out, "h1") || !strings.Contains(out, "2/8") {
		t.Fatalf("hosts ls: %v\n%s", err, out)
	}
	out, err = waggle(t, "projector", "status")
	if err != nil || !strings.Contains(out, "generation 2") || !strings.Contains(out, "cli") {
		t.Fatalf("projector status: %v\n%s", err, out)
	}
	out, err = waggle(t, "audit", "log", "--env", "e0", "--principal", "acme")
	if err != nil || !strings.Contains(out, "code_sha256=c0ffee") || !strings.Contains(out, "exit=7") || strings.Contains(out, "host:h1") {
		t.Fatalf("audit log: %v\n%s", err, out)
	}
	out, err = waggle(t, "audit", "verify")
	if err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

// FuzzParseWhen checks that an absolute time does not depend on now while a duration counts
// back from it, and that the zero time comes only from an input that names that instant
// (0001-01-01, 0001-01-01T00:00:00Z, 0000-12-31T23:00:00-01:00, ...): it is a valid time,
// which parseSince reads as "from the first event".
func FuzzParseWhen(f *testing.F) {
	now := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	for _, s := range []string{"2026-11-26T17:00:00Z", "2026-11-26T17:00:00.5+01:00", "2026-11-26", "10m", "1h30m", "", "-5m", "yesterday",
		"0001-01-01", "0001-01-01T00:00:00Z", "0000-12-31T23:00:00-01:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen(s, now)
		if err != nil {
			return
		}
		later, err := parseWhen(s, now.Add(time.Hour))
		if err != nil {
			t.Fatalf("%q parsed at %v but not an hour later: %v", s, now, err)
		}
		trimmed := strings.TrimSpace(s)
		d, derr := time.ParseDuration(trimmed)
		isDuration := derr == nil && d >= 0
		var wantMove time.Duration // an absolute time stays put
		if isDuration {
			wantMove = time.Hour
		}
		if moved := later.Sub(got); moved != wantMove {
			t.Fatalf("%q moved by %v when now moved by an hour, want %v: %v, then %v", s, moved, wantMove, got, later)
		}
		if got.IsZero() && !strings.HasPrefix(trimmed, "0001-01-01") && !strings.HasPrefix(trimmed, "0000-12-31") {
			t.Fatalf("%q parsed to the zero time without naming it", s)
		}
		if isDuration && d > 0 && got.After(now) {
			t.Fatalf("duration %q is in the future: %v", s, got)
		}
	})
}
