// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/projector"
)

// benchEnv is an environment the bench created.
type benchEnv struct {
	ID        string `json:"environment_id"`
	Host      string `json:"host"`
	MemoryMiB int    `json:"memory_mib"`
	BootMS    int64  `json:"boot_ms"`
}

// createShell creates a shell environment; the bench's environments time out after 10 idle
// minutes should it die before destroying them.
func createShell(ctx context.Context, s *mcpSession) (benchEnv, error) {
	var env benchEnv
	err := s.Call(ctx, "create_environment", map[string]any{"runtime": "shell", "timeout_minutes": 10}, &env)
	return env, err
}

// execTrivial runs the trivial command of language in env and checks its output.
func execTrivial(ctx context.Context, s *mcpSession, env, language string) (hostrpc.ExecResult, error) {
	code, _ := trivialCode(language)
	var out hostrpc.ExecResult
	if err := s.Call(ctx, "execute", map[string]any{"environment_id": env, "code": code, "language": language}, &out); err != nil {
		return out, err
	}
	return out, checkTrivial(code, out)
}

// checkTrivial checks the result of the trivial command.
func checkTrivial(code string, res hostrpc.ExecResult) error {
	if res.ExitCode != 0 || res.Stdout != "1\n" {
		return fmt.Errorf("%q: exit code %d, stdout %q, stderr %q", code, res.ExitCode, res.Stdout, res.Stderr)
	}
	return nil
}

// destroyAll destroys envs over the sessions, even after ctx ended, so the bench leaves
// nothing behind; it returns the first failure.
func destroyAll(ctx context.Context, sessions []*mcpSession, envs []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	m := measure(ctx, sessions, len(envs), nil, func(ctx context.Context, s *mcpSession, i int) error {
		return s.Call(ctx, "destroy_environment", map[string]any{"environment_id": envs[i]}, nil)
	})
	if len(m.errs[0]) > 0 {
		return fmt.Errorf("destroy %d of %d environments failed: %w", len(m.errs[0]), len(envs), m.errs[0][0])
	}
	return nil
}

// tti: time to interactive, create_environment then the first echo, one after the other; cold
// on the target and, when the bench starts its own waggle, from a warm pool.
func (b *bench) tti(ctx context.Context) (string, error) {
	name := "as configured"
	if b.o.up {
		name = "cold (no warm pool)"
	}
	c, err := b.ttiCase(ctx, b.t, name, nil)
	b.res.TTI = append(b.res.TTI, c)
	if err != nil || !b.o.up || b.o.warmPool == 0 {
		return fmt.Sprintf("%s p50 %.0f ms", name, c.P50MS), err
	}
	var warm *benchTarget
	pool := strconv.Itoa(b.o.warmPool)
	err = b.rep.Stage("bench", "tti warm up", "a second waggle up with a warm pool of "+pool+" shell VMs", func() (string, error) {
		var err error
		if warm, err = startBenchUp(ctx, b.o, "--warm-pool", pool, "--warm-runtimes", "shell"); err != nil {
			return "", err
		}
		return "pool full", b.waitPool(ctx, warm)
	})
	if warm != nil {
		defer func() {
			if err := warm.stop(); err != nil {
				b.rep.Printf("bench", "stop the warm waggle up: %v", err)
			}
		}()
	}
	if err != nil {
		return "", err
	}
	// Each create finds a full pool, as an agent arriving at a host at rest does.
	wc, err := b.ttiCase(ctx, warm, "warm pool", b.waitPool)
	b.res.TTI = append(b.res.TTI, wc)
	return fmt.Sprintf("%s p50 %.0f ms, warm pool p50 %.0f ms", name, c.P50MS, wc.P50MS), err
}

// ttiCase times --tti-n sequential creates of a shell environment, each with its first echo;
// each environment is destroyed before the next create, after before(t) if set.
func (b *bench) ttiCase(ctx context.Context, t *benchTarget, name string, before func(context.Context, *benchTarget) error) (benchCase, error) {
	n := b.o.ttiN
	s, err := dialMCP(ctx, t.url, t.key)
	if err != nil {
		return benchCase{Name: name}, err
	}
	defer s.Close()
	bar := b.rep.Bar("tti", name, n)
	m := measured{took: [][]time.Duration{make([]time.Duration, n)}, errs: [][]error{nil}}
	var boots []float64
	start := time.Now()
	for i := range n {
		if before != nil {
			if err := before(ctx, t); err != nil {
				return benchCase{Name: name}, err
			}
		}
		t0 := time.Now()
		env, err := createShell(ctx, s)
		if err == nil {
			_, err = execTrivial(ctx, s, env.ID, "shell")
		}
		took := time.Since(t0)
		if env.ID != "" {
			boots = append(boots, float64(env.BootMS))
			if derr := destroyAll(ctx, []*mcpSession{s}, []string{env.ID}); derr != nil && err == nil {
				err = derr
			}
		}
		if err != nil {
			m.errs[0] = append(m.errs[0], err)
		} else {
			m.took[0][i] = took
		}
		bar.Add(1)
	}
	m.wall = time.Since(start)
	bar.Done("")
	c := benchCase{Name: name, benchStats: m.stats(0), Note: fmt.Sprintf("boot p50 %.0f ms (as the host reported it)", median(boots))}
	return c, nil
}

// waitPool waits until t's host has its warm pool of shell VMs full.
func (b *bench) waitPool(ctx context.Context, t *benchTarget) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		v, ok, err := scrapeGauge(ctx, t.metricsURL, "waggle_hostagent_warm_pool_ready", `runtime="shell"`)
		if err == nil && ok && int(v) >= b.o.warmPool {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the warm pool of %d shell VMs did not fill: %d ready: %w", b.o.warmPool, int(v), errors.Join(ctx.Err(), err))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// execShares is where an execute's time went, as medians in milliseconds (see hostrpc.Timing):
// the router (HTTP, MCP, auth, the view; the total minus the host RPC), NATS (the RPC's round
// trip minus the host agent's time), the host agent (minus the guest session) and the guest
// (the SSH session from open to exit status).
type execShares struct {
	TotalMS  float64 `json:"total_ms"`
	RouterMS float64 `json:"router_ms"`
	NATSMS   float64 `json:"nats_ms"`
	HostMS   float64 `json:"host_agent_ms"`
	GuestMS  float64 `json:"guest_ms"`
}

func (e execShares) String() string {
	if e.TotalMS == 0 {
		return ""
	}
	pct := func(v float64) string { return fmt.Sprintf("%.1f ms (%.0f%%)", v, 100*v/e.TotalMS) }
	return "router " + pct(e.RouterMS) + ", NATS " + pct(e.NATSMS) + ", host agent " + pct(e.HostMS) + ", guest " + pct(e.GuestMS)
}

// shares computes the median share of each hop over calls whose results carried timing.
func shares(total []time.Duration, timing []*hostrpc.Timing) execShares {
	var tot, router, nats, host, guest []float64
	for i, t := range timing {
		if t == nil || total[i] == 0 {
			continue
		}
		all := ms(total[i])
		tot = append(tot, all)
		router = append(router, all-t.RPCMS)
		nats = append(nats, t.RPCMS-t.HostMS)
		host = append(host, t.HostMS-t.GuestMS)
		guest = append(guest, t.GuestMS)
	}
	r := func(v float64) float64 { return math.Round(v*100) / 100 }
	return execShares{TotalMS: r(median(tot)), RouterMS: r(median(router)), NATSMS: r(median(nats)), HostMS: r(median(host)), GuestMS: r(median(guest))}
}

// execCase is one language of the exec scenario.
type execCase struct {
	Name string `json:"name"`
	benchStats
	Breakdown execShares `json:"breakdown"`
}

// exec: a trivial shell echo and python print, one after the other in one environment each,
// after two calls to warm up.
func (b *bench) exec(ctx context.Context) (string, error) {
	s, err := dialMCP(ctx, b.t.url, b.t.key)
	if err != nil {
		return "", err
	}
	defer s.Close()
	var summary []string
	for _, lang := range []struct{ runtime, name string }{{"shell", "shell echo"}, {"python", "python print"}} {
		var env benchEnv
		if err := s.Call(ctx, "create_environment", map[string]any{"runtime": lang.runtime, "timeout_minutes": 10}, &env); err != nil {
			return "", err
		}
		c, err := b.execCase(ctx, s, env.ID, lang.runtime, lang.name)
		derr := destroyAll(ctx, []*mcpSession{s}, []string{env.ID})
		b.res.Exec = append(b.res.Exec, c)
		if err = errors.Join(err, derr); err != nil {
			return "", err
		}
		summary = append(summary, fmt.Sprintf("%s p50 %.1f ms", lang.name, c.P50MS))
	}
	return strings.Join(summary, ", "), nil
}

func (b *bench) execCase(ctx context.Context, s *mcpSession, env, language, name string) (execCase, error) {
	for range 2 {
		if _, err := execTrivial(ctx, s, env, language); err != nil {
			return execCase{Name: name}, err
		}
	}
	n := b.o.execN
	timing := make([]*hostrpc.Timing, n)
	bar := b.rep.Bar("exec", name, n)
	m := measure(ctx, []*mcpSession{s}, n, bar, func(ctx context.Context, s *mcpSession, i int) error {
		res, err := execTrivial(ctx, s, env, language)
		timing[i] = res.Timing
		return err
	})
	bar.Done("")
	return execCase{Name: name, benchStats: m.stats(0), Breakdown: shares(m.took[0], timing)}, nil
}

// burstCase is one burst of concurrent creates.
type burstCase struct {
	Concurrent  int        `json:"concurrent"`
	Started     int        `json:"started"`
	Failed      int        `json:"failed"`
	CompletionS float64    `json:"completion_s"` // from the first call to the last answer
	Create      benchStats `json:"create_environment"`
}

func (c burstCase) note() string {
	return fmt.Sprintf("all answered in %.1f s: %d started, %d failed", c.CompletionS, c.Started, c.Failed)
}

// burst: --bursts creates at once, each over its own MCP session, then destroys them.
func (b *bench) burst(ctx context.Context) (string, error) {
	most := 0
	for _, n := range b.o.bursts {
		most = max(most, n)
	}
	sessions, closeAll, err := dialSessions(ctx, b.t, most)
	if err != nil {
		return "", err
	}
	defer closeAll()
	var summary []string
	for _, n := range b.o.bursts {
		bar := b.rep.Bar("burst", strconv.Itoa(n)+" concurrent creates", n)
		m := measured{took: [][]time.Duration{make([]time.Duration, n)}, errs: [][]error{nil}}
		ids := make([]string, n)
		var mu sync.Mutex
		var wg sync.WaitGroup
		release := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-release
				t0 := time.Now()
				env, err := createShell(ctx, sessions[i])
				took := time.Since(t0)
				mu.Lock()
				if err != nil {
					m.errs[0] = append(m.errs[0], err)
				} else {
					m.took[0][i], ids[i] = took, env.ID
				}
				mu.Unlock()
				bar.Add(1)
			})
		}
		start := time.Now()
		close(release)
		wg.Wait()
		m.wall = time.Since(start)
		bar.Done("")
		var started []string
		for _, id := range ids {
			if id != "" {
				started = append(started, id)
			}
		}
		c := burstCase{Concurrent: n, Started: len(started), Failed: n - len(started),
			CompletionS: math.Round(m.wall.Seconds()*10) / 10, Create: m.stats(0)}
		b.res.Burst = append(b.res.Burst, c)
		if err := destroyAll(ctx, sessions, started); err != nil {
			return "", err
		}
		summary = append(summary, fmt.Sprintf("%d: %d started in %.1f s", n, c.Started, c.CompletionS))
	}
	return strings.Join(summary, "; "), nil
}

// eventsReport is the event log under load.
type eventsReport struct {
	Writers   int        `json:"writers"`
	DurationS float64    `json:"duration_s"`
	Appended  int64      `json:"appended"`
	PerSecond float64    `json:"appends_per_s"`
	Append    benchStats `json:"append"`
	// The projector's lag while the load ran (events stored and not yet in the view), sampled
	// every LagSampleMS, and how long after the last append the view caught up.
	LagSampleMS  int     `json:"lag_sample_ms"`
	LagEventsP50 uint64  `json:"lag_events_p50"`
	LagEventsP99 uint64  `json:"lag_events_p99"`
	LagEventsMax uint64  `json:"lag_events_max"`
	CatchUpMS    float64 `json:"catch_up_ms"`
}

func (e *eventsReport) note() string {
	return fmt.Sprintf("%.0f appends/s; projector lag p50 %d, p99 %d, max %d events; view caught up %.0f ms after the last append",
		e.PerSecond, e.LagEventsP50, e.LagEventsP99, e.LagEventsMax, e.CatchUpMS)
}

// benchHost is the host id of the environments the events scenario writes: no host agent
// serves it, so nothing boots for them.
const benchHost = "bench"

// lagSample is how often the events scenario reads the projector's lag.
const lagSample = 50 * time.Millisecond

// events: --event-writers writers append environment lifecycles (requested to destroyed, with
// exec audit events) to the event log for --events-for, while the projector's lag is sampled.
func (b *bench) events(ctx context.Context) (string, error) {
	if b.t.natsURL == "" {
		return b.skip("events", "needs the event log: use --up, or --nats-url with --url")
	}
	nc, err := b.t.connectNATS()
	if err != nil {
		return "", err
	}
	defer nc.Close()
	log, err := events.BindLog(ctx, nc)
	if err != nil {
		return "", err
	}
	view, err := projector.NewReader(log.JetStream())
	if err != nil {
		return "", err
	}
	lagOf := func(ctx context.Context) (uint64, error) {
		last, err := log.LastSeq(ctx)
		if err != nil {
			return 0, err
		}
		applied, err := view.Freshness(ctx)
		if err != nil || applied >= last {
			return 0, err
		}
		return last - applied, nil
	}

	w := b.o.eventWriters
	load, stopLoad := context.WithTimeout(ctx, b.o.eventsFor)
	defer stopLoad()
	var lags []uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(lagSample)
		defer t.Stop()
		for {
			select {
			case <-load.Done():
				return
			case <-t.C:
				if lag, err := lagOf(load); err == nil {
					lags = append(lags, lag)
				}
			}
		}
	}()
	bar := b.rep.Bar("events", "append", int(b.o.eventsFor/time.Second))
	var appended atomic.Int64
	took := make([][]time.Duration, w)
	errs := make([]error, w)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range w {
		wg.Go(func() { took[i], errs[i] = appendLifecycles(load, log, &appended) })
	}
	go func() {
		for {
			select {
			case <-load.Done():
				return
			case <-time.After(time.Second):
				bar.Add(1)
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	<-sampled
	bar.Done(fmt.Sprintf("%d appended", appended.Load()))
	catchUp := time.Now()
	for {
		lag, err := lagOf(ctx)
		if err != nil {
			return "", err
		}
		if lag == 0 {
			break
		}
		if time.Since(catchUp) > time.Minute {
			return "", fmt.Errorf("the projector is still %d events behind a minute after the load", lag)
		}
		time.Sleep(5 * time.Millisecond)
	}
	catchUpMS := ms(time.Since(catchUp))
	var all []time.Duration
	for _, t := range took {
		all = append(all, t...)
	}
	st := summarize(all)
	st.Calls, st.PerSecond = len(all), math.Round(float64(len(all))/elapsed.Seconds())
	if err := errors.Join(errs...); err != nil {
		st.Errors, st.FirstError = 1, err.Error()
	}
	rep := &eventsReport{Writers: w, DurationS: math.Round(elapsed.Seconds()*10) / 10, Appended: appended.Load(),
		PerSecond: st.PerSecond, Append: st, LagSampleMS: int(lagSample / time.Millisecond), CatchUpMS: catchUpMS}
	rep.LagEventsP50, rep.LagEventsP99, rep.LagEventsMax = quantiles(lags)
	b.res.Events = rep
	return rep.note(), nil
}

// quantiles are the nearest-rank p50, p99 and maximum of v (zeros when empty).
func quantiles(v []uint64) (p50, p99, most uint64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	rank := func(p float64) uint64 { return v[min(max(int(math.Ceil(p/100*float64(len(v)))), 1), len(v))-1] }
	return rank(50), rank(99), v[len(v)-1]
}

// lifecycleStep is one event of the lifecycle the events scenario appends.
type lifecycleStep struct {
	typ  string
	data any
}

// benchLifecycle is an environment's life as a host records it: placed, started, six
// commands run, destroyed.
func benchLifecycle() []lifecycleStep {
	steps := []lifecycleStep{
		{events.EnvRequested, events.Requested{Runtime: "shell", Name: "bench", Owner: benchHost,
			Resources: events.Resources{CPUs: 1, MemoryMiB: 128}, TTLSeconds: 60}},
		{events.EnvPlaced, events.Placed{Host: benchHost}},
		{events.EnvStarting, nil},
		{events.EnvStarted, events.Started{BootMillis: 1}},
	}
	for range 6 {
		steps = append(steps, lifecycleStep{events.EnvExec, events.Exec{Language: "shell", CodeSHA256: events.Hash([]byte("echo 1")), CodeSize: 6, StdoutBytes: 2}})
	}
	return append(steps, lifecycleStep{events.EnvDestroyRequested, events.DestroyRequested{By: benchHost, Reason: events.ReasonUser}},
		lifecycleStep{events.EnvDestroyed, nil})
}

// appendLifecycles appends whole environment lifecycles until ctx ends, and returns each
// append's latency. The environment being written when ctx ends is left half done: the
// projector folds what there is.
func appendLifecycles(ctx context.Context, log *events.Log, appended *atomic.Int64) ([]time.Duration, error) {
	var took []time.Duration
	lifecycle := benchLifecycle()
	var env string
	var head events.Head
	for i := 0; ctx.Err() == nil; i++ {
		step := lifecycle[i%len(lifecycle)]
		if step.typ == events.EnvRequested {
			env, head = strings.ToLower(ulid.Make().String()), events.Head{}
		}
		ev, err := events.NewEnvEvent(benchHost, env, step.typ, benchHost, step.data)
		if err != nil {
			return took, err
		}
		t0 := time.Now()
		// An append under way when the load's time is up completes and counts.
		if head, err = log.Append(context.WithoutCancel(ctx), ev, head); err != nil {
			return took, err
		}
		took = append(took, time.Since(t0))
		appended.Add(1)
	}
	return took, nil
}

// densityReport is how many idle environments one host held and what they cost it.
type densityReport struct {
	Held int `json:"held"`
	// Refusal is the answer to the create that was refused ("" when --density-max was reached).
	Refusal   string     `json:"refusal,omitempty"`
	Create    benchStats `json:"create_environment"`
	MemoryMiB int        `json:"guest_memory_mib"` // what each environment asked for
	// QEMU is the host memory of the environments' QEMU processes (only when the bench started
	// the waggle: it needs their processes).
	QEMU         *vmMemory `json:"qemu,omitempty"`
	RSSPerEnvMiB float64   `json:"rss_per_env_mib,omitempty"`
	PSSPerEnvMiB float64   `json:"pss_per_env_mib,omitempty"`
}

func (d *densityReport) note() string {
	s := fmt.Sprintf("held %d idle %d MiB environments", d.Held, d.MemoryMiB)
	if d.QEMU != nil {
		s += fmt.Sprintf("; QEMU RSS %.0f MiB, PSS %.0f MiB per environment", d.RSSPerEnvMiB, d.PSSPerEnvMiB)
	}
	if d.Refusal != "" {
		s += "; then refused: " + d.Refusal
	}
	return s
}

// density: create shell environments one by one and leave them idle until the host refuses
// one (or --density-max), read their QEMU processes' memory, then destroy them.
func (b *bench) density(ctx context.Context) (string, error) {
	s, err := dialMCP(ctx, b.t.url, b.t.key)
	if err != nil {
		return "", err
	}
	defer s.Close()
	n := b.o.densityMax
	bar := b.rep.Bar("density", "create until refused", n)
	d := &densityReport{}
	b.res.Density = d
	var ids []string
	var took []time.Duration
	var createErr error
	for range n {
		t0 := time.Now()
		env, err := createShell(ctx, s)
		var refused *ToolError
		if errors.As(err, &refused) {
			d.Refusal = refused.Text
			break
		}
		if err != nil {
			createErr = err
			break
		}
		took = append(took, time.Since(t0))
		ids, d.MemoryMiB = append(ids, env.ID), env.MemoryMiB
		bar.Add(1)
	}
	bar.Done(fmt.Sprintf("%d held", len(ids)))
	d.Held = len(ids)
	d.Create = summarize(took)
	d.Create.Calls = len(took)
	if d.Refusal != "" {
		d.Create.Calls++
		d.Create.Errors, d.Create.FirstError = 1, d.Refusal
	}
	if b.t.dataDir != "" && len(ids) > 0 {
		time.Sleep(2 * time.Second) // idle: the guests settle after boot
		mem, err := qemuMemory(b.t.dataDir)
		if err != nil {
			createErr = errors.Join(createErr, err)
		} else if mem.Processes > 0 {
			d.QEMU = &mem
			d.RSSPerEnvMiB = math.Round(float64(mem.RSSKiB)/1024/float64(mem.Processes)*10) / 10
			d.PSSPerEnvMiB = math.Round(float64(mem.PSSKiB)/1024/float64(mem.Processes)*10) / 10
		}
	}
	sessions, closeAll, err := dialSessions(ctx, b.t, 4)
	if err != nil {
		return "", errors.Join(createErr, err)
	}
	defer closeAll()
	if err := errors.Join(createErr, destroyAll(ctx, sessions, ids)); err != nil {
		return "", err
	}
	return d.note(), nil
}

// callsReport is the calls scenario: create, execute and destroy latencies, and with NATS the
// router's added latency against direct host RPCs.
type callsReport struct {
	Runtime string     `json:"runtime"`
	Create  benchStats `json:"create_environment"`
	Execute benchStats `json:"execute"`
	Destroy benchStats `json:"destroy_environment"`
	// Direct is execute as a direct host RPC and RouterAddedMS the median of the differences
	// between an execute and the direct RPC made right before or after it (only with NATS).
	Direct        *benchStats `json:"direct_exec,omitempty"`
	RouterAddedMS *float64    `json:"router_added_p50_ms,omitempty"`
}

// calls: --creates environments (--parallel at a time), --execs trivial commands spread over
// them (each paired with a direct host RPC when NATS is reachable), then destroys them all.
func (b *bench) calls(ctx context.Context) (string, error) {
	o := b.o
	code, _ := trivialCode(o.runtime)
	sessions, closeAll, err := dialSessions(ctx, b.t, o.parallel)
	if err != nil {
		return "", err
	}
	defer closeAll()
	var nc *nats.Conn
	if b.t.natsURL != "" {
		if nc, err = b.t.connectNATS(); err != nil {
			return "", err
		}
		defer nc.Close()
	}
	rep := &callsReport{Runtime: o.runtime}
	b.res.Calls = rep
	var mu sync.Mutex
	var envs []benchEnv
	rep.Create = measure(ctx, sessions, o.creates, b.rep.Bar("calls", "create", o.creates), func(ctx context.Context, s *mcpSession, _ int) error {
		var env benchEnv
		args := map[string]any{"runtime": o.runtime, "timeout_minutes": 10}
		if o.memoryMiB > 0 {
			args["memory_mib"] = o.memoryMiB
		}
		if err := s.Call(ctx, "create_environment", args, &env); err != nil {
			return err
		}
		mu.Lock()
		envs = append(envs, env)
		mu.Unlock()
		return nil
	}).stats(0)
	if len(envs) > 0 {
		calls := []benchCall{func(ctx context.Context, s *mcpSession, i int) error {
			_, err := execTrivial(ctx, s, envs[i%len(envs)].ID, o.runtime)
			return err
		}}
		if nc != nil {
			calls = append(calls, func(ctx context.Context, _ *mcpSession, i int) error {
				return directExec(ctx, nc, envs[i%len(envs)], o.runtime, code)
			})
		}
		m := measure(ctx, sessions, o.execs, b.rep.Bar("calls", "execute", o.execs), calls...)
		rep.Execute = m.stats(0)
		if nc != nil {
			direct, added := m.stats(1), m.pairedP50(0, 1)
			rep.Direct, rep.RouterAddedMS = &direct, &added
		}
	}
	// Destroy even when the run was cut short, so the bench leaves nothing behind.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer dcancel()
	rep.Destroy = measure(dctx, sessions, len(envs), nil, func(ctx context.Context, s *mcpSession, i int) error {
		return s.Call(ctx, "destroy_environment", map[string]any{"environment_id": envs[i].ID}, nil)
	}).stats(0)
	if rep.Create.Errors == o.creates {
		return "", fmt.Errorf("every create_environment failed: %s", rep.Create.FirstError)
	}
	return fmt.Sprintf("create p50 %.0f ms, execute p50 %.1f ms", rep.Create.P50MS, rep.Execute.P50MS), nil
}

// directExec runs code in env with a host RPC straight to its host, as a router does.
func directExec(ctx context.Context, nc *nats.Conn, env benchEnv, runtime, code string) error {
	data, err := json.Marshal(hostrpc.ExecRequest{Env: env.ID, Code: code, Language: runtime, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	msg := nats.NewMsg(hostrpc.Subject(env.Host, hostrpc.OpExec))
	msg.Data = data
	msg.Header.Set(hostrpc.HeaderPrincipal, "system")
	msg.Header.Set(hostrpc.HeaderCorrelation, "waggle-bench")
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	reply, err := nc.RequestMsgWithContext(rctx, msg)
	if err != nil {
		return fmt.Errorf("exec on host %s: %w", env.Host, err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("exec on host %s: %s: %s", env.Host, code, reply.Header.Get(micro.ErrorHeader))
	}
	var res hostrpc.ExecResult
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return fmt.Errorf("decode exec answer of host %s: %w", env.Host, err)
	}
	return checkTrivial(code, res)
}
