// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/eventstest"
)

// startWaggle runs `waggle <args>` in-process until the test ends and returns its output
// lines with the time each arrived.
func startWaggle(t *testing.T, args ...string) <-chan timedLine {
	t.Helper()
	pr, pw := io.Pipe()
	root := newRootCmd()
	root.SetOut(pw)
	root.SetErr(pw)
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- root.ExecuteContext(ctx)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("waggle %v: %v", args, err)
		}
	})
	return timedLines(pr)
}

// startWaggleProcess runs the built waggle binary as a separate process and returns the lines
// of its stdout, each with the time it was read.
func startWaggleProcess(t *testing.T, args ...string) <-chan timedLine {
	t.Helper()
	cmd := exec.Command(builtWaggle(t), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	return timedLines(out)
}

// timedLines reads r line by line until it ends.
func timedLines(r io.Reader) <-chan timedLine {
	lines := make(chan timedLine, 100)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- timedLine{sc.Text(), time.Now()}
		}
		close(lines)
	}()
	return lines
}

type timedLine struct {
	text string
	at   time.Time
}

func nextLine(t *testing.T, lines <-chan timedLine) timedLine {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("tail ended")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line from tail within 10s")
	}
	panic("unreachable")
}

// TestEventsTail: an event appended over another connection shows up in `waggle events tail`
// (measured latency logged; the bound asserted is generous, the target is 100 ms).
func TestEventsTail(t *testing.T) {
	// The separate-process case runs the built binary: build it before any deadline runs, so a
	// cold build cache costs time, not the test.
	builtWaggle(t)
	url := eventstest.Start(t).Server.ClientURL()
	nc, err := nats.Connect(url) // the writer: its own TCP connection
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	l, err := events.OpenLog(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	heads := map[string]events.Head{}
	appendEv := func(t *testing.T, env, typ string, data any) *events.Event {
		t.Helper()
		ev, err := events.NewEnvEvent("h1", env, typ, "acme", data)
		if err != nil {
			t.Fatal(err)
		}
		if heads[env], err = l.Append(ctx, ev, heads[env]); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	appendEv(t, "old", events.EnvRequested, nil) // before the tails start

	tests := []struct {
		name       string
		start      func(t *testing.T, args ...string) <-chan timedLine
		args       []string
		warmupEnv  string // an environment (and type) the tail shows, to know it is live
		warmupType string
		check      func(t *testing.T, line string, ev *events.Event)
	}{
		{"plain", startWaggle, nil, "warmup", events.EnvTouched, func(t *testing.T, line string, ev *events.Event) {
			for _, want := range []string{fmt.Sprint(ev.Seq), ev.Subject, "acme", "host=h1"} {
				if !strings.Contains(line, want) {
					t.Fatalf("line %q lacks %q", line, want)
				}
			}
		}},
		{"separate process", startWaggleProcess, nil, "warmup", events.EnvTouched, func(t *testing.T, line string, ev *events.Event) {
			if !strings.Contains(line, ev.Subject) {
				t.Fatalf("line %q lacks %q", line, ev.Subject)
			}
		}},
		{"json", startWaggle, []string{"--json"}, "warmup", events.EnvTouched, func(t *testing.T, line string, ev *events.Event) {
			var got tailLine
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if got.Seq != ev.Seq || got.Subject != ev.Subject || string(got.Event) != string(ev.Raw) || got.Stored.IsZero() {
				t.Fatalf("line %q for event %+v", line, ev)
			}
		}},
		{"env filter", startWaggle, []string{"--env", "watched", "--type", events.EnvPlaced}, "watched", events.EnvPlaced, func(t *testing.T, line string, ev *events.Event) {
			if !strings.Contains(line, events.EnvSubject("h1", "watched", events.EnvPlaced)) {
				t.Fatalf("line %q", line)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := tt.start(t, append([]string{"events", "tail", "--nats-url", url}, tt.args...)...)
			// The tail shows only new events by default: append until one shows up, so the
			// tail is known to be live before measuring.
			ready := time.NewTicker(50 * time.Millisecond)
			defer ready.Stop()
		warmup:
			for {
				appendEv(t, tt.warmupEnv, tt.warmupType, nil)
				select {
				case <-lines:
					break warmup
				case <-ready.C:
				}
			}
			// Another environment's event must not show up in the filtered tail; the measured
			// event is appended last.
			appendEv(t, "other", events.EnvPlaced, events.Placed{Host: "h1"})
			start := time.Now()
			ev := appendEv(t, "watched", events.EnvPlaced, events.Placed{Host: "h1"})
			seq := fmt.Sprint(ev.Seq)
			var line timedLine
			for line = nextLine(t, lines); !strings.HasPrefix(line.text, seq+" ") && !strings.Contains(line.text, `"seq":`+seq+`,`); line = nextLine(t, lines) {
				if strings.Contains(line.text, "other") && tt.name == "env filter" {
					t.Fatalf("filtered tail printed %q", line.text)
				}
			}
			latency := line.at.Sub(start)
			t.Logf("event appended by another connection shown by the tail after %s", latency)
			if latency > 2*time.Second {
				t.Fatalf("latency %s", latency)
			}
			tt.check(t, line.text, ev)
		})
	}
}

func TestEventsTailSinceAndUnreadable(t *testing.T) {
	n := eventstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	l := n.Log
	ev, err := events.NewHostEvent("h1", events.HostJoined, "host:h1", events.HostInfo{CPUs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, ev, events.Head{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.JetStream().Publish(ctx, events.HostSubject("h1", events.HostLeft), []byte(`{"id":"X","type":"left","v":7}`)); err != nil {
		t.Fatal(err)
	}
	lines := startWaggle(t, "events", "tail", "--nats-url", n.Server.ClientURL(), "--since", "1", "--host", "h1")
	if l := nextLine(t, lines).text; !strings.HasPrefix(l, "1 ") || !strings.Contains(l, "cpus=4") {
		t.Fatalf("line 1: %q", l)
	}
	if l := nextLine(t, lines).text; !strings.HasPrefix(l, "2 ") || !strings.Contains(l, "unknown schema version") {
		t.Fatalf("line 2: %q", l)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    sinceStart
		wantErr bool
	}{
		{"", sinceStart{newOnly: true}, false},
		{"42", sinceStart{pos: events.Position{Seq: 42}}, false},
		{"0", sinceStart{}, true},
		{"2026-11-26T17:00:00Z", sinceStart{pos: events.Position{Time: now.Add(-time.Hour)}}, false},
		{"2026-11-26T18:00:00.5+01:00", sinceStart{pos: events.Position{Time: time.Date(2026, 11, 26, 17, 0, 0, 5e8, time.UTC)}}, false},
		{"10m", sinceStart{pos: events.Position{Time: now.Add(-10 * time.Minute)}}, false},
		{"-10m", sinceStart{}, true},
		{"yesterday", sinceStart{}, true},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in, now)
		if (err != nil) != tt.wantErr || got.newOnly != tt.want.newOnly || got.pos.Seq != tt.want.pos.Seq || !got.pos.Time.Equal(tt.want.pos.Time) {
			t.Errorf("parseSince(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"", "1", "2026-11-26T17:00:00Z", "10m", "-1", "18446744073709551616"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSince(s, now)
		if err != nil {
			return
		}
		if s != "" && got.newOnly || got.pos.Seq == 0 && got.pos.Time.IsZero() && !got.newOnly {
			t.Fatalf("parseSince(%q) = %+v", s, got)
		}
	})
}

// TestNATSCommand runs `waggle nats` standalone (stream R1) and as a 3-node cluster (R3) and
// checks that the stream is created with the audit settings.
func TestNATSCommand(t *testing.T) {
	tests := []struct {
		name     string
		nodes    int
		replicas int
	}{
		{"standalone", 1, 1},
		{"cluster", 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientPorts, routePorts := freePorts(t, tt.nodes), freePorts(t, tt.nodes)
			var routes []string
			for _, p := range routePorts {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
			var urls []string
			// A standalone node makes its trust on first start; a cluster's is made once and
			// shared by its nodes.
			dataDir := t.TempDir()
			creds := filepath.Join(dataDir, "creds")
			if tt.nodes > 1 {
				creds = filepath.Join(t.TempDir(), "cluster-creds")
				if out, err := waggle(t, "creds", "init", "--dir", creds); err != nil {
					t.Fatalf("waggle creds init: %v: %s", err, out)
				}
			}
			for i := range tt.nodes {
				listen := fmt.Sprintf("127.0.0.1:%d", clientPorts[i])
				urls = append(urls, "nats://"+listen)
				args := []string{"nats", "--listen", listen, "--server-name", fmt.Sprintf("n%d", i)}
				if tt.nodes == 1 {
					args = append(args, "--data-dir", dataDir)
				} else {
					args = append(args, "--data-dir", t.TempDir(), "--creds-dir", creds, "--cluster-name", "cli",
						"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", routePorts[i]), "--routes", strings.Join(routes, ","))
				}
				startWaggle(t, args...)
			}
			url := strings.Join(urls, ",")
			stream := waitForStream(t, url, filepath.Join(creds, "operator.creds"))
			for _, f := range []string{"admin.creds", "operator.creds", "router.creds", "projector.creds", "account.nk"} {
				st, err := os.Stat(filepath.Join(creds, f))
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("%s: %v (mode %v), want a 0600 file", f, err, st)
				}
			}
			if nc, err := nats.Connect(url); err == nil {
				nc.Close()
				t.Fatal("waggle nats let a client without credentials connect")
			}
			cfg := stream.CachedInfo().Config
			if cfg.Replicas != tt.replicas || !cfg.DenyDelete || !cfg.DenyPurge || cfg.Storage != jetstream.FileStorage {
				t.Fatalf("stream config %+v", cfg)
			}
		})
	}
}

// waitForStream connects to url with the credential at creds and waits until the event stream
// exists.
func waitForStream(t *testing.T, url, creds string) jetstream.Stream {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var nc *nats.Conn
	var err error
	var opts []nats.Option
	for opts, err = access.ConnectOptions(creds); err != nil; opts, err = access.ConnectOptions(creds) {
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for nc, err = nats.Connect(url, opts...); err != nil; nc, err = nats.Connect(url, opts...) {
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		stream, err := js.Stream(ctx, events.StreamName)
		cancel()
		if err == nil {
			return stream
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream %s within 30s: %v", events.StreamName, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePorts finds n free loopback TCP ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
