// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// startedWatch reports the started and failed events of a host as they are stored.
type startedWatch struct {
	mu      sync.Mutex
	waiters map[string]chan string // env -> event type
}

func watchStarted(tb testing.TB, c *eventstest.Node, host string) *startedWatch {
	w := &startedWatch{waiters: map[string]chan string{}}
	sub, err := c.NC.Subscribe(events.EnvSubject(host, "*", "*"), func(msg *nats.Msg) {
		p, err := events.ParseSubject(msg.Subject)
		if err != nil || (p.Type != events.EnvStarted && p.Type != events.EnvFailed && p.Type != events.EnvRejected) {
			return
		}
		w.mu.Lock()
		ch := w.waiters[p.Env]
		w.mu.Unlock()
		if ch != nil {
			ch <- p.Type
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *startedWatch) expect(env string) chan string {
	ch := make(chan string, 1)
	w.mu.Lock()
	w.waiters[env] = ch
	w.mu.Unlock()
	return ch
}

// placeAndWait places one environment and returns the time from the append of placed to the
// arrival of started. It may run on any goroutine.
func placeAndWait(c *eventstest.Node, w *startedWatch, host, runtime string) (string, time.Duration, error) {
	ctx := context.Background()
	env := newEnvID()
	done := w.expect(env)
	req, err := events.NewEnvEvent(host, env, events.EnvRequested, "bench", events.Requested{Runtime: runtime, TTLSeconds: 600})
	if err != nil {
		return env, 0, err
	}
	head, err := c.Log.Append(ctx, req, events.Head{})
	if err != nil {
		return env, 0, err
	}
	placed, err := events.NewEnvEvent(host, env, events.EnvPlaced, "bench", events.Placed{Host: host})
	if err != nil {
		return env, 0, err
	}
	start := time.Now()
	if _, err := c.Log.Append(ctx, placed, head); err != nil {
		return env, 0, err
	}
	select {
	case typ := <-done:
		if typ != events.EnvStarted {
			evs, _, _ := c.Log.Load(ctx, events.EnvAggregate(host, env))
			return env, 0, fmt.Errorf("environment %s: %s: %s", env, typ, evs[len(evs)-1].Data)
		}
	case <-time.After(10 * time.Minute):
		return env, 0, fmt.Errorf("environment %s not started after 10 minutes", env)
	}
	return env, time.Since(start), nil
}

// destroyAndWait requests the destruction of env (as a router would, re-reading the head on
// a conflict: started reaches a subscriber just before the stream stores it) and waits for it.
func destroyAndWait(tb testing.TB, c *eventstest.Node, host, env string) {
	g := aggregate{host: host, env: env}
	ok, err := g.appendEvent(context.Background(), c.Log, events.EnvDestroyRequested, "bench", "",
		events.DestroyRequested{By: "bench", Reason: events.ReasonUser})
	if err != nil || !ok {
		tb.Fatalf("destroy %s: %v (state %s)", env, err, g.State)
	}
	waitState(tb, c, host, env, events.StateDestroyed, time.Minute)
}

func reportLatencies(b *testing.B, what string, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.Logf("%s over %d calls: p50 %.1f ms, p99 %.1f ms, max %.1f ms", what, len(lat), pct(0.5), pct(0.99), float64(lat[len(lat)-1].Microseconds())/1000)
}

// BenchmarkPlacementToStarted measures placed -> started: the agent's own cost (fake VMs),
// a cold boot of a real VM, and a start from the warm pool.
func BenchmarkPlacementToStarted(b *testing.B) {
	cases := []struct {
		name string
		warm int
		real bool
	}{
		{"fake", 0, false},
		{"vm-cold", 0, true},
		{"vm-warm", 1, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := eventstest.Start(b)
			cfg := testConfig(b, "bench")
			cfg.WarmPool, cfg.WarmRuntimes = tc.warm, []string{"shell"}
			var m Machines = newFakeMachines()
			cfg.Capacity = Capacity{MemoryMiB: 1 << 30, CPUs: 1 << 20, MaxEnvironments: 1 << 20}
			if tc.real {
				vmtest.Require(b)
				vmtest.Image(b, "shell")
				m = NewVMMachines(quietManager(b), vmtest.CacheDir(b), cfg.Logger)
			}
			a, _ := runAgent(b, c, cfg, m)
			w := watchStarted(b, c, "bench")
			var lat []time.Duration
			for b.Loop() {
				if tc.warm > 0 { // measure the warm path: wait for the refill outside the timing
					b.StopTimer()
					waitFor(b, 5*time.Minute, "pool refilled", func() bool { return a.pool.readyCount() >= tc.warm })
					b.StartTimer()
				}
				env, d, err := placeAndWait(c, w, "bench", "shell")
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, d)
				if tc.real {
					b.StopTimer()
					destroyAndWait(b, c, "bench", env)
					b.StartTimer()
				}
			}
			reportLatencies(b, "placement -> started", lat)
		})
	}
}

// BenchmarkParallelCreates places 16 environments on one host at once and counts how many
// start (the target: all 16, none failing), with real VMs.
func BenchmarkParallelCreates(b *testing.B) {
	const n = 16
	vmtest.Require(b)
	vmtest.Image(b, "shell")
	c := eventstest.Start(b)
	cfg := testConfig(b, "bench")
	cfg.Capacity = Capacity{MemoryMiB: n * cfg.DefaultResources.MemoryMiB, CPUs: n, MaxEnvironments: n}
	cfg.AckWait = 30 * time.Second
	runAgent(b, c, cfg, NewVMMachines(quietManager(b), vmtest.CacheDir(b), cfg.Logger))
	w := watchStarted(b, c, "bench")
	for b.Loop() {
		var wg sync.WaitGroup
		envs := make([]string, n)
		lat := make([]time.Duration, n)
		errs := make([]error, n)
		start := time.Now()
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				envs[i], lat[i], errs[i] = placeAndWait(c, w, "bench", "shell")
			}()
		}
		wg.Wait()
		total := time.Since(start)
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n), "started")
		b.ReportMetric(total.Seconds(), "all-started-s")
		b.Logf("%d parallel creates: all started in %s (%.1f starts/min)", n, total.Round(time.Millisecond), float64(n)/total.Minutes())
		reportLatencies(b, "placement -> started", lat)
		b.StopTimer()
		for _, env := range envs {
			destroyAndWait(b, c, "bench", env)
		}
		b.StartTimer()
	}
}

// quietManager is a test VM manager that does not log every boot into the benchmark output.
func quietManager(b *testing.B) *vm.Manager {
	return vmtest.Manager(b, func(c *vm.Config) { c.Logger = slog.New(slog.DiscardHandler) })
}

func (p *warmPool) readyCount() int {
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	n := 0
	for _, vms := range p.ready {
		n += len(vms)
	}
	return n
}

// BenchmarkExecVM measures execute through the host RPC (NATS request, host agent, SSH into a
// real VM, the interpreter, the audit event) on an idle VM: a trivial shell echo and python
// print(1), the figures of README's performance table. guest-ms is the share the guest client
// measured from opening the SSH session to the command's end. Run it with -benchtime=30x.
func BenchmarkExecVM(b *testing.B) {
	vmtest.Require(b)
	for _, tc := range []struct{ runtime, code, want string }{
		{"shell", "echo 1", "1\n"},
		{"python", "print(1)", "1\n"},
	} {
		b.Run(tc.runtime, func(b *testing.B) {
			vmtest.Image(b, tc.runtime)
			c := eventstest.Start(b)
			cfg := testConfig(b, "bench")
			runAgent(b, c, cfg, NewVMMachines(quietManager(b), vmtest.CacheDir(b), cfg.Logger))
			env := newEnvID()
			place(b, c, "bench", env, events.Requested{Runtime: tc.runtime})
			waitState(b, c, "bench", env, events.StateRunning, 5*time.Minute)
			req := hostrpc.ExecRequest{Env: env, Code: tc.code, Timeout: 30 * time.Second}
			var lat, guest []time.Duration
			for b.Loop() {
				var res hostrpc.ExecResult
				start := time.Now()
				if e := call(b, c.NC, "bench", hostrpc.OpExec, req, &res); e != nil || res.Stdout != tc.want {
					b.Fatalf("exec %q: %+v, %+v", tc.code, e, res)
				}
				lat = append(lat, time.Since(start))
				guest = append(guest, time.Duration(res.DurationMS)*time.Millisecond)
			}
			reportLatencies(b, "exec "+tc.runtime, lat)
			slices.Sort(guest)
			b.ReportMetric(float64(guest[len(guest)/2].Milliseconds()), "guest-p50-ms")
		})
	}
}
