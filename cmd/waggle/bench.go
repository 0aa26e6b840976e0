// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/internal/progress"
)

// benchOptions are the settings of `waggle bench`.
type benchOptions struct {
	up                 bool
	url, key, runtime  string
	natsURL, natsCreds string
	cacheDir, accel    string
	timeout            time.Duration
	asJSON             bool

	// tti, exec, burst, events, density
	ttiN, warmPool  int
	execN           int
	bursts          []int
	eventsFor       time.Duration
	eventWriters    int
	densityMax      int
	creates, execs  int // calls
	parallel        int // calls
	memoryMiB       int // calls
	scenarios       []string
	progressEnabled bool
}

// benchScenario is one scenario of `waggle bench`: its name, what it measures, and how.
type benchScenario struct {
	name, help string
	run        func(*bench, context.Context) (summary string, err error)
	// byDefault scenarios run when none is named.
	byDefault bool
}

// benchScenarios are the scenarios in the order they run.
var benchScenarios = []benchScenario{
	{"tti", "create a shell environment, then its first echo; cold, and with a warm pool (--up)", (*bench).tti, true},
	{"exec", "a shell echo and a python print, and the share of router, NATS, host agent and guest", (*bench).exec, true},
	{"burst", "--bursts concurrent creates (default 16 and 32): completion time, failures", (*bench).burst, true},
	{"events", "appends/s to the event log and the projector's lag under that load (needs --up or --nats-url)", (*bench).events, true},
	{"density", "idle environments one host holds before it refuses, and host memory (RSS, PSS) per environment (--up)", (*bench).density, true},
	{"calls", "--creates environments, --execs commands over them, destroys; with --nats-url also direct host RPCs and the router's added latency", (*bench).calls, false},
}

// lookupScenario finds a scenario by name.
func lookupScenario(name string) (benchScenario, bool) {
	for _, s := range benchScenarios {
		if s.name == name {
			return s, true
		}
	}
	return benchScenario{}, false
}

// scenarioHelp lists the scenarios for the command's help.
func scenarioHelp() string {
	var b strings.Builder
	for _, s := range benchScenarios {
		def := ""
		if !s.byDefault {
			def = " (only when named)"
		}
		fmt.Fprintf(&b, "  %-8s %s%s\n", s.name, s.help, def)
	}
	return b.String()
}

func newBenchCmd() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench (--up | --url URL --key KEY) [--json] [SCENARIO...]",
		Short: "Measure a waggle through its MCP endpoint, as an agent uses it: time to interactive, execute, bursts, the event log, density",
		Long: "Drive a waggle through MCP like an agent and print p50/p90/p99 latencies and throughput.\n" +
			"--up starts a waggle up of its own in a temporary data directory (and removes it after);\n" +
			"--url drives a running one. Scenarios (every one but calls when none is named):\n" + scenarioHelp() +
			"It states the acceleration, cores, memory and versions it ran with.",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.scenarios = args
			var rep *progress.Reporter
			if o.progressEnabled {
				rep = progress.New(cmd.ErrOrStderr())
			}
			res, err := runBench(cmd.Context(), o, rep)
			if res != nil {
				if o.asJSON {
					if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
						return werr
					}
				} else if perr := res.print(cmd.OutOrStdout()); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.up, "up", false, "start a waggle up of its own in a temporary data directory and drive that")
	f.StringVar(&o.url, "url", "http://127.0.0.1:8080/mcp", "MCP endpoint of a router (without --up)")
	f.StringVar(&o.key, "key", "", "API key (sent as Authorization: Bearer KEY); empty when the router runs --no-auth")
	f.StringVar(&o.natsURL, "nats-url", "", "NATS of the waggle at --url: enables events and, for calls, direct host RPCs")
	f.StringVar(&o.natsCreds, "nats-creds", "", "credentials for --nats-url: calls needs a router's (host RPC), events an admin's (it appends every event type)")
	f.StringVar(&o.cacheDir, "cache-dir", cacheDir(defaultDataDir), "kernel and image cache of the waggle up that --up starts")
	f.StringVar(&o.accel, "accel", "auto", "acceleration of the waggle up that --up starts: auto, kvm or tcg")
	f.IntVar(&o.ttiN, "tti-n", 5, "tti: creates per case")
	f.IntVar(&o.warmPool, "warm-pool", 1, "tti: warm pool of shell VMs of the second waggle up, refilled before each create (--up; 0: no warm case)")
	f.IntVar(&o.execN, "exec-n", 20, "exec: calls per language")
	f.IntSliceVar(&o.bursts, "bursts", []int{16, 32}, "burst: concurrent creates of each case")
	f.DurationVar(&o.eventsFor, "events-for", 5*time.Second, "events: how long to append")
	f.IntVar(&o.eventWriters, "event-writers", 8, "events: concurrent writers, each on its own environments")
	f.IntVar(&o.densityMax, "density-max", 64, "density: stop after this many environments even when the host takes more")
	f.StringVar(&o.runtime, "runtime", "python", "calls: runtime of the environments: python, node or shell")
	f.IntVar(&o.creates, "creates", 3, "calls: environments to create")
	f.IntVar(&o.memoryMiB, "memory-mib", 0, "calls: memory of each environment (0: the router's default); a warm pool serves only its hosts' default size")
	f.IntVar(&o.parallel, "parallel", 1, "calls: calls in flight at once")
	f.IntVar(&o.execs, "execs", 20, "calls: trivial commands to run, spread over the environments")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&o.progressEnabled, "progress", true, "report each stage on stderr")
	return cmd
}

// check refuses settings that cannot run, naming the flag.
func (o benchOptions) check() error {
	for _, s := range o.scenarios {
		if _, ok := lookupScenario(s); !ok {
			names := make([]string, len(benchScenarios))
			for i, s := range benchScenarios {
				names[i] = s.name
			}
			return fmt.Errorf("unknown scenario %q: use %s", s, strings.Join(names, ", "))
		}
	}
	_, ok := trivialCode(o.runtime)
	switch {
	case !ok:
		return fmt.Errorf("--runtime %q: use python, node or shell", o.runtime)
	case o.creates < 1:
		return fmt.Errorf("--creates must be at least 1")
	case o.parallel < 1:
		return fmt.Errorf("--parallel must be at least 1")
	case o.execs < 0:
		return fmt.Errorf("--execs must not be negative")
	case o.memoryMiB < 0:
		return fmt.Errorf("--memory-mib must not be negative")
	case o.ttiN < 1 || o.execN < 1:
		return fmt.Errorf("--tti-n and --exec-n must be at least 1")
	case o.warmPool < 0:
		return fmt.Errorf("--warm-pool must not be negative")
	case o.eventsFor <= 0 || o.eventWriters < 1:
		return fmt.Errorf("--events-for must be positive and --event-writers at least 1")
	case o.densityMax < 1:
		return fmt.Errorf("--density-max must be at least 1")
	case o.up && (o.natsURL != "" || o.natsCreds != ""):
		return fmt.Errorf("--nats-url and --nats-creds are for --url; --up knows its own")
	}
	for _, n := range o.bursts {
		if n < 1 || n > 256 {
			return fmt.Errorf("--bursts %d: use 1 to 256 concurrent creates", n)
		}
	}
	return nil
}

// benchReport is what `waggle bench` measured.
type benchReport struct {
	URL       string       `json:"url"`
	Machine   benchMachine `json:"machine"`
	Scenarios []string     `json:"scenarios"`
	TookS     float64      `json:"took_s"`

	TTI     []benchCase    `json:"tti,omitempty"`
	Exec    []execCase     `json:"exec,omitempty"`
	Burst   []burstCase    `json:"burst,omitempty"`
	Events  *eventsReport  `json:"events,omitempty"`
	Density *densityReport `json:"density,omitempty"`
	Calls   *callsReport   `json:"calls,omitempty"`
	// Skipped names scenarios that could not run here and why.
	Skipped map[string]string `json:"skipped,omitempty"`
}

// benchStats summarizes the latencies of one kind of call; failed calls are counted apart.
type benchStats struct {
	Calls  int     `json:"calls"`
	Errors int     `json:"errors"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MeanMS float64 `json:"mean_ms"`
	MinMS  float64 `json:"min_ms"`
	MaxMS  float64 `json:"max_ms"`
	// PerSecond is the successful calls per second of wall time (0 when not measured).
	PerSecond float64 `json:"per_s,omitempty"`
	// FirstError is the first failure's text, so a failing run says why.
	FirstError string `json:"first_error,omitempty"`
}

// benchCase is the stats of one case of a scenario.
type benchCase struct {
	Name string `json:"name"`
	benchStats
	// Note says more about the case (the boot times the host reported, say).
	Note string `json:"note,omitempty"`
}

// runBench runs the scenarios against the target and reports each stage on rep (nil: quiet).
// A report is returned even when a scenario failed, with what was measured.
func runBench(ctx context.Context, o benchOptions, rep *progress.Reporter) (*benchReport, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	scenarios := o.scenarios
	if len(scenarios) == 0 {
		for _, s := range benchScenarios {
			if s.byDefault {
				scenarios = append(scenarios, s.name)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	start := time.Now()
	target := &benchTarget{url: o.url, key: o.key, natsURL: o.natsURL, natsCreds: o.natsCreds}
	where := "remote waggle at " + o.url + ", seen from this machine"
	if o.up {
		err := rep.Stage("bench", "up", "waggle up in a temporary data directory", func() (string, error) {
			var err error
			target, err = startBenchUp(ctx, o)
			if err != nil {
				return "", err
			}
			return target.url + ", acceleration " + target.accel, nil
		})
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := target.stop(); err != nil {
				rep.Printf("bench", "stop waggle up: %v", err)
			}
		}()
		where = "waggle up on this machine"
	}
	res := &benchReport{URL: target.url, Machine: thisMachine(target.accel, where), Scenarios: scenarios, Skipped: map[string]string{}}
	b := &bench{o: o, t: target, rep: rep, res: res}
	var errs []error
	for _, s := range scenarios {
		sc, _ := lookupScenario(s)
		err := rep.Stage("bench", s, "", func() (string, error) { return sc.run(b, ctx) })
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	res.TookS = math.Round(time.Since(start).Seconds()*10) / 10
	if len(res.Skipped) == 0 {
		res.Skipped = nil
	}
	return res, errors.Join(errs...)
}

// bench is one run: its options, target, progress and report.
type bench struct {
	o   benchOptions
	t   *benchTarget
	rep *progress.Reporter
	res *benchReport
}

// skip records why a scenario did not run here.
func (b *bench) skip(scenario, why string) (string, error) {
	b.res.Skipped[scenario] = why
	return "skipped: " + why, nil
}

// trivialCode is a command in runtime that does almost nothing.
func trivialCode(runtime string) (string, bool) {
	switch runtime {
	case "python":
		return "print(1)", true
	case "node":
		return "console.log(1)", true
	case "shell":
		return "echo 1", true
	}
	return "", false
}

// benchCall is the i-th call of one kind, made with session s.
type benchCall func(ctx context.Context, s *mcpSession, i int) error

// measured holds the latency of every call of a measure run: took[kind][job], 0 when the
// call failed (its error is in errs[kind]), and the run's wall time.
type measured struct {
	took [][]time.Duration
	errs [][]error
	wall time.Duration
}

// measure makes n calls of each kind over the sessions (one job in flight per session). Job i
// makes its calls of every kind back to back, starting with a different kind each time, so
// that the kinds see the same conditions and can be compared pairwise. bar, if set, counts
// the jobs done.
func measure(ctx context.Context, sessions []*mcpSession, n int, bar *progress.Bar, calls ...benchCall) measured {
	jobs := make(chan int)
	var mu sync.Mutex
	m := measured{took: make([][]time.Duration, len(calls)), errs: make([][]error, len(calls))}
	for kind := range calls {
		m.took[kind] = make([]time.Duration, n)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			for i := range jobs {
				for k := range calls {
					kind := (i + k) % len(calls)
					start := time.Now()
					err := calls[kind](ctx, s, i)
					d := time.Since(start)
					mu.Lock()
					if err != nil {
						m.errs[kind] = append(m.errs[kind], err)
					} else {
						m.took[kind][i] = d
					}
					mu.Unlock()
				}
				if bar != nil {
					bar.Add(1)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	m.wall = time.Since(start)
	return m
}

// stats summarizes the calls of one kind, with their rate over the run's wall time.
func (m measured) stats(kind int) benchStats {
	var ok []time.Duration
	for _, d := range m.took[kind] {
		if d > 0 {
			ok = append(ok, d)
		}
	}
	st := summarize(ok)
	st.Calls, st.Errors = len(m.took[kind]), len(m.errs[kind])
	if len(m.errs[kind]) > 0 {
		st.FirstError = m.errs[kind][0].Error()
	}
	if m.wall > 0 {
		st.PerSecond = math.Round(float64(len(ok))/m.wall.Seconds()*100) / 100
	}
	return st
}

// pairedP50 is the median over jobs of kind a's latency minus kind b's, in milliseconds:
// comparing the calls of one job cancels most of the noise both share.
func (m measured) pairedP50(a, b int) float64 {
	var diffs []float64
	for i, da := range m.took[a] {
		if db := m.took[b][i]; da > 0 && db > 0 {
			diffs = append(diffs, ms(da-db))
		}
	}
	return median(diffs)
}

// median is the middle value (the lower one of an even count) of v; 0 when empty.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[(len(v)-1)/2]
}

// summarize gives the percentiles (nearest rank), mean, min and max of d in milliseconds.
func summarize(d []time.Duration) benchStats {
	if len(d) == 0 {
		return benchStats{}
	}
	d = slices.Clone(d)
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return benchStats{
		P50MS: ms(percentile(d, 50)), P90MS: ms(percentile(d, 90)), P99MS: ms(percentile(d, 99)),
		MeanMS: ms(sum / time.Duration(len(d))), MinMS: ms(d[0]), MaxMS: ms(d[len(d)-1]),
	}
}

// percentile is the nearest-rank p-th percentile of the sorted, non-empty d.
func percentile(d []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(d))))
	return d[min(max(rank, 1), len(d))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

// benchRow is one line of the report's table.
type benchRow struct {
	scenario, name string
	st             benchStats
	note           string
}

func (r *benchReport) rows() []benchRow {
	var rows []benchRow
	for _, c := range r.TTI {
		rows = append(rows, benchRow{"tti", c.Name, c.benchStats, c.Note})
	}
	for _, c := range r.Exec {
		rows = append(rows, benchRow{"exec", c.Name, c.benchStats, c.Breakdown.String()})
	}
	for _, c := range r.Burst {
		rows = append(rows, benchRow{"burst", fmt.Sprintf("%d concurrent creates", c.Concurrent), c.Create, c.note()})
	}
	if e := r.Events; e != nil {
		rows = append(rows, benchRow{"events", fmt.Sprintf("append, %d writers", e.Writers), e.Append, e.note()})
	}
	if d := r.Density; d != nil {
		rows = append(rows, benchRow{"density", "create until refused", d.Create, d.note()})
	}
	if c := r.Calls; c != nil {
		rows = append(rows, benchRow{"calls", "create_environment", c.Create, ""},
			benchRow{"calls", "execute", c.Execute, ""}, benchRow{"calls", "destroy_environment", c.Destroy, ""})
		if c.Direct != nil {
			rows = append(rows, benchRow{"calls", "direct host exec", *c.Direct,
				fmt.Sprintf("router adds %.1f ms (median of MCP minus direct, pairwise)", *c.RouterAddedMS)})
		}
	}
	return rows
}

func (r *benchReport) print(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "waggle bench: %s (%s)\n", r.URL, m.Where)
	fmt.Fprintf(w, "machine: %s acceleration, %d cores (%s), %d MiB; kernel %s; waggle %s, %s, QEMU %s; %.1f s\n",
		m.Accel, m.Cores, orDash(m.CPU), m.MemoryMiB, orDash(m.Kernel), m.WaggleVersion, m.GoVersion, orDash(m.QEMUVersion), r.TookS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tcase\tcalls\terrors\tp50 ms\tp90 ms\tp99 ms\tper s\tnotes")
	for _, row := range r.rows() {
		st := row.st
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.2f\t%s\n", row.scenario, row.name, st.Calls, st.Errors,
			st.P50MS, st.P90MS, st.P99MS, st.PerSecond, row.note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, row := range r.rows() {
		if row.st.FirstError != "" {
			fmt.Fprintf(w, "first %s %s error: %s\n", row.scenario, row.name, row.st.FirstError)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(r.Skipped)) {
		fmt.Fprintf(w, "%s skipped: %s\n", s, r.Skipped[s])
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mcpSession is an initialized MCP client of one router over Streamable HTTP.
type mcpSession struct {
	c *client.Client
}

// ToolError is a tool result with isError set: the tool's own explanation of a mistake.
type ToolError struct {
	Tool, Text string
}

func (e *ToolError) Error() string { return e.Tool + ": " + e.Text }

// dialMCP connects to the MCP endpoint url with the bearer key (none when empty) and
// initializes the session.
func dialMCP(ctx context.Context, url, key string) (*mcpSession, error) {
	var opts []transport.StreamableHTTPCOption
	if key != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	}
	c, err := client.NewStreamableHttpClient(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("mcp client for %s: %w", url, err)
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("start mcp client for %s: %w", url, err)
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ProtocolVersion = mcpgo.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcpgo.Implementation{Name: "waggle-bench", Version: version}
	if _, err := c.Initialize(ctx, init); err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize mcp session with %s: %w", url, err)
	}
	return &mcpSession{c: c}, nil
}

// dialSessions opens n sessions with the target; close closes them all.
func dialSessions(ctx context.Context, t *benchTarget, n int) (sessions []*mcpSession, closeAll func(), err error) {
	closeAll = func() {
		for _, s := range sessions {
			s.Close()
		}
	}
	for range n {
		s, err := dialMCP(ctx, t.url, t.key)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		sessions = append(sessions, s)
	}
	return sessions, closeAll, nil
}

// Call invokes tool and decodes its JSON text result into out (unless out is nil). A tool
// error comes back as *ToolError.
func (s *mcpSession) Call(ctx context.Context, tool string, args map[string]any, out any) error {
	text, isErr, err := s.CallText(ctx, tool, args)
	if err != nil {
		return err
	}
	if isErr {
		return &ToolError{Tool: tool, Text: text}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal([]byte(text), out); err != nil {
		return fmt.Errorf("%s: decode result %q: %w", tool, text, err)
	}
	return nil
}

// CallText invokes tool and returns the text of its result and whether it is a tool error.
func (s *mcpSession) CallText(ctx context.Context, tool string, args map[string]any) (string, bool, error) {
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = tool, args
	res, err := s.c.CallTool(ctx, req)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", tool, err)
	}
	var text string
	for _, c := range res.Content {
		if tc, ok := c.(mcpgo.TextContent); ok {
			text += tc.Text
		}
	}
	if text == "" && !res.IsError {
		return "", false, errors.New(tool + ": result has no text content")
	}
	return text, res.IsError, nil
}

// Close ends the session.
func (s *mcpSession) Close() error { return s.c.Close() }
