// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// benchOptions are the settings of `waggle bench`.
type benchOptions struct {
	url, key, runtime  string
	natsURL, natsCreds string
	creates, parallel  int
	memoryMiB          int
	execs              int
	timeout            time.Duration
	asJSON             bool
}

func newBenchCmd() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench --url URL --key KEY [--creates N] [--parallel P] [--execs M] [--runtime R]",
		Short: "Measure create_environment and execute latency through a running waggle's MCP endpoint",
		Long: "Create --creates environments (--parallel at a time) through the MCP endpoint, run --execs\n" +
			"trivial commands spread over them, destroy them all, and print p50/p99 latencies of each call.\n" +
			"With --nats-url it also runs the same commands as direct host RPCs (no router) and prints the\n" +
			"router's added latency: execute p50 through MCP minus direct p50.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := runBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			return rep.print(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.url, "url", "http://127.0.0.1:8080/mcp", "MCP endpoint of a router")
	f.StringVar(&o.key, "key", "", "API key (sent as Authorization: Bearer KEY); empty when the router runs --no-auth")
	f.StringVar(&o.natsURL, "nats-url", "", "also time direct host RPCs over this NATS server (optional)")
	f.StringVar(&o.natsCreds, "nats-creds", "", "router credentials for --nats-url (a router may call host RPC)")
	f.StringVar(&o.runtime, "runtime", "python", "runtime of the environments: python, node or shell")
	f.IntVar(&o.creates, "creates", 3, "environments to create")
	f.IntVar(&o.memoryMiB, "memory-mib", 0, "memory of each environment (0: the router's default); a warm pool serves only its hosts' default size")
	f.IntVar(&o.parallel, "parallel", 1, "calls in flight at once")
	f.IntVar(&o.execs, "execs", 20, "trivial commands to run, spread over the environments")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	return cmd
}

// benchReport is what `waggle bench` measured.
type benchReport struct {
	URL     string     `json:"url"`
	Runtime string     `json:"runtime"`
	Create  benchStats `json:"create_environment"`
	Execute benchStats `json:"execute"`
	Destroy benchStats `json:"destroy_environment"`
	// Direct is execute as a direct host RPC and RouterAddedMS the median of the differences
	// between an execute and the direct RPC made right before or after it (only with
	// --nats-url).
	Direct        *benchStats `json:"direct_exec,omitempty"`
	RouterAddedMS *float64    `json:"router_added_p50_ms,omitempty"`
}

// benchStats summarizes the latencies of one tool's calls; failed calls are counted apart.
type benchStats struct {
	Calls  int     `json:"calls"`
	Errors int     `json:"errors"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MeanMS float64 `json:"mean_ms"`
	MinMS  float64 `json:"min_ms"`
	MaxMS  float64 `json:"max_ms"`
	// FirstError is the first failure's text, so a failing run says why.
	FirstError string `json:"first_error,omitempty"`
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

func runBench(ctx context.Context, o benchOptions) (*benchReport, error) {
	code, ok := trivialCode(o.runtime)
	switch {
	case !ok:
		return nil, fmt.Errorf("--runtime %q: use python, node or shell", o.runtime)
	case o.creates < 1:
		return nil, fmt.Errorf("--creates must be at least 1")
	case o.parallel < 1:
		return nil, fmt.Errorf("--parallel must be at least 1")
	case o.execs < 0:
		return nil, fmt.Errorf("--execs must not be negative")
	case o.memoryMiB < 0:
		return nil, fmt.Errorf("--memory-mib must not be negative")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	sessions := make([]*mcpSession, o.parallel)
	for i := range sessions {
		s, err := dialMCP(ctx, o.url, o.key)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		sessions[i] = s
	}
	var nc *nats.Conn
	if o.natsURL != "" {
		var err error
		opts := []nats.Option{nats.Name("waggle-bench")}
		if o.natsCreds != "" {
			co, err := access.ConnectOptions(o.natsCreds)
			if err != nil {
				return nil, err
			}
			opts = append(opts, co...)
		}
		if nc, err = nats.Connect(o.natsURL, opts...); err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", o.natsURL, err)
		}
		defer nc.Close()
	}
	rep := &benchReport{URL: o.url, Runtime: o.runtime}

	var mu sync.Mutex
	var envs []benchEnv
	rep.Create = measure(ctx, sessions, o.creates, func(ctx context.Context, s *mcpSession, _ int) error {
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
			var out hostrpc.ExecResult
			if err := s.Call(ctx, "execute", map[string]any{"environment_id": envs[i%len(envs)].ID, "code": code}, &out); err != nil {
				return err
			}
			return checkTrivial(code, out)
		}}
		if nc != nil {
			calls = append(calls, func(ctx context.Context, _ *mcpSession, i int) error {
				return directExec(ctx, nc, envs[i%len(envs)], o.runtime, code)
			})
		}
		m := measure(ctx, sessions, o.execs, calls...)
		rep.Execute = m.stats(0)
		if nc != nil {
			direct, added := m.stats(1), m.pairedP50(0, 1)
			rep.Direct, rep.RouterAddedMS = &direct, &added
		}
	}
	// Destroy even when the run was cut short, so the bench leaves nothing behind.
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer dcancel()
	rep.Destroy = measure(dctx, sessions, len(envs), func(ctx context.Context, s *mcpSession, i int) error {
		return s.Call(ctx, "destroy_environment", map[string]any{"environment_id": envs[i].ID}, nil)
	}).stats(0)
	if rep.Create.Errors == o.creates {
		return rep, fmt.Errorf("every create_environment failed: %s", rep.Create.FirstError)
	}
	return rep, nil
}

// benchEnv is an environment the bench created.
type benchEnv struct {
	ID   string `json:"environment_id"`
	Host string `json:"host"`
}

// checkTrivial checks the result of the trivial command.
func checkTrivial(code string, res hostrpc.ExecResult) error {
	if res.ExitCode != 0 || res.Stdout != "1\n" {
		return fmt.Errorf("%q: exit code %d, stdout %q, stderr %q", code, res.ExitCode, res.Stdout, res.Stderr)
	}
	return nil
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

// benchCall is the i-th call of one kind, made with session s.
type benchCall func(ctx context.Context, s *mcpSession, i int) error

// measured holds the latency of every call of a measure run: took[kind][job], 0 when the
// call failed (its error is in errs[kind]).
type measured struct {
	took [][]time.Duration
	errs [][]error
}

// measure makes n calls of each kind over the sessions (one job in flight per session). Job i
// makes its calls of every kind back to back, starting with a different kind each time, so
// that the kinds see the same conditions and can be compared pairwise.
func measure(ctx context.Context, sessions []*mcpSession, n int, calls ...benchCall) measured {
	jobs := make(chan int)
	var mu sync.Mutex
	m := measured{took: make([][]time.Duration, len(calls)), errs: make([][]error, len(calls))}
	for kind := range calls {
		m.took[kind] = make([]time.Duration, n)
	}
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
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return m
}

// stats summarizes the calls of one kind.
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
	if len(diffs) == 0 {
		return 0
	}
	slices.Sort(diffs)
	return diffs[(len(diffs)-1)/2]
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
		P50MS: ms(percentile(d, 50)), P99MS: ms(percentile(d, 99)),
		MeanMS: ms(sum / time.Duration(len(d))), MinMS: ms(d[0]), MaxMS: ms(d[len(d)-1]),
	}
}

// percentile is the nearest-rank p-th percentile of the sorted, non-empty d.
func percentile(d []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(d))))
	return d[min(max(rank, 1), len(d))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

// benchRow is one line of the report.
type benchRow struct {
	tool string
	st   benchStats
}

func (r *benchReport) rows() []benchRow {
	rows := []benchRow{{"create_environment", r.Create}, {"execute", r.Execute}, {"destroy_environment", r.Destroy}}
	if r.Direct != nil {
		rows = append(rows, benchRow{"direct host exec", *r.Direct})
	}
	return rows
}

func (r *benchReport) print(w io.Writer) error {
	fmt.Fprintf(w, "waggle bench: %s, runtime %s\n", r.URL, r.Runtime)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tcalls\terrors\tp50 ms\tp99 ms\tmean ms\tmin ms\tmax ms\t")
	for _, row := range r.rows() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", row.tool, row.st.Calls, row.st.Errors,
			row.st.P50MS, row.st.P99MS, row.st.MeanMS, row.st.MinMS, row.st.MaxMS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.RouterAddedMS != nil {
		fmt.Fprintf(w, "router's added latency on execute (median of MCP minus direct host RPC, pairwise): %.1f ms\n", *r.RouterAddedMS)
	}
	for _, row := range r.rows() {
		if row.st.FirstError != "" {
			fmt.Fprintf(w, "first %s error: %s\n", row.tool, row.st.FirstError)
		}
	}
	return nil
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
