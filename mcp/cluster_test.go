// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/projector"
	"github.com/waggle-dev/waggle/router"
)

// cluster is a real embedded JetStream server, the real projector, fake hosts and N routers.
type cluster struct {
	*eventstest.Node
	t       testing.TB
	ctx     context.Context
	tokens  *router.Tokens
	hosts   []*fakeHost
	routers []*router.Router
	urls    []string
}

// newCluster starts everything; adjust tweaks each router's config.
func newCluster(t testing.TB, nRouters int, adjust func(*router.Config), modes ...hostMode) *cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{Node: eventstest.Start(t), t: t, ctx: ctx}
	var err error
	if c.tokens, err = router.OpenTokens(ctx, c.Log.JetStream()); err != nil {
		t.Fatal(err)
	}
	var stops []func()
	t.Cleanup(func() {
		cancel()
		for _, stop := range stops {
			stop()
		}
	})
	run := func(fn func(context.Context) error) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := fn(ctx); err != nil {
				t.Error(err)
			}
		}()
		stops = append(stops, func() { <-done })
	}
	pcfg := projector.DefaultConfig()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pcfg.Name, pcfg.DigestEvery, pcfg.Logger = "test", 0, quiet
	proj, err := projector.New(pcfg, c.Log)
	if err != nil {
		t.Fatal(err)
	}
	run(proj.Run)
	for i, m := range modes {
		nc, lg := c.Connect(t)
		c.hosts = append(c.hosts, startFakeHost(t, ctx, lg, nc, fmt.Sprintf("host-%d", i+1), m))
	}
	for i := range nRouters {
		c.addRouter(fmt.Sprintf("router-%d", i+1), adjust, nil)
	}
	c.waitHosts(len(modes))
	return c
}

// addRouter starts one more router replica until the test ends; adjust tweaks its config and
// wrap, if set, what it sees of the event log.
func (c *cluster) addRouter(id string, adjust func(*router.Config), wrap func(router.EventLog) router.EventLog) *router.Router {
	t := c.t
	t.Helper()
	nc, lg := c.Connect(t)
	view, err := projector.NewReader(lg.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	toks, err := router.OpenTokens(c.ctx, lg.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := router.DefaultConfig()
	cfg.ID, cfg.Listen, cfg.Logger = id, "127.0.0.1:0", slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if adjust != nil {
		adjust(&cfg)
	}
	var log router.EventLog = lg
	if wrap != nil {
		log = wrap(lg)
	}
	r, err := router.New(cfg, router.Deps{NC: nc, Log: log, View: view, Tokens: toks, MCP: Handler})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	addr, err := r.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.routers = append(c.routers, r)
	c.urls = append(c.urls, "http://"+addr.String()+"/mcp")
	return r
}

// waitHosts waits until the view shows n live hosts.
func (c *cluster) waitHosts(n int) {
	c.t.Helper()
	view, err := projector.NewReader(c.Log.JetStream())
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		hosts, err := view.Hosts(c.ctx)
		live := 0
		for _, h := range hosts {
			if h.State == projector.HostLive {
				live++
			}
		}
		if err == nil && live >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("view shows %d live hosts after 10s, want %d (err %v)", live, n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// key creates an API key for tenant.
func (c *cluster) key(tenant string) string {
	c.t.Helper()
	key, _, err := c.tokens.Create(c.ctx, tenant, "test")
	if err != nil {
		c.t.Fatal(err)
	}
	return key
}

// roundRobin sends each HTTP request to the next router in turn: no sticky sessions.
type roundRobin struct {
	hosts []string
	n     atomic.Uint64
}

func (rr *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Host = rr.hosts[int(rr.n.Add(1)-1)%len(rr.hosts)]
	req.Host = req.URL.Host
	return http.DefaultTransport.RoundTrip(req)
}

// client is an MCP client over HTTP with key, spreading its requests over every router (one
// request to each in turn). protocol "" negotiates the newest; an older one forces the
// initialize handshake.
func (c *cluster) client(key, protocol string) *mcpClient {
	c.t.Helper()
	rr := &roundRobin{}
	for _, u := range c.urls {
		rr.hosts = append(rr.hosts, strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/mcp"))
	}
	cl, err := client.NewStreamableHttpClient(c.urls[0],
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}),
		transport.WithHTTPBasicClient(&http.Client{Transport: rr}))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	if err := cl.Start(c.ctx); err != nil {
		c.t.Fatal(err)
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ProtocolVersion = protocol
	init.Params.ClientInfo = mcpgo.Implementation{Name: "waggle-test", Version: "1"}
	if _, err := cl.Initialize(c.ctx, init); err != nil {
		c.t.Fatal(err)
	}
	return &mcpClient{t: c.t, ctx: c.ctx, c: cl, rr: rr}
}

type mcpClient struct {
	t   testing.TB
	ctx context.Context
	c   *client.Client
	rr  *roundRobin
}

// call invokes a tool; it returns the result's JSON text and whether it is a tool error.
func (m *mcpClient) call(tool string, args map[string]any) (string, bool) {
	m.t.Helper()
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = tool, args
	res, err := m.c.CallTool(m.ctx, req)
	if err != nil {
		m.t.Fatalf("%s(%v): %v", tool, args, err)
	}
	if len(res.Content) != 1 {
		m.t.Fatalf("%s: %d content items", tool, len(res.Content))
	}
	text, ok := res.Content[0].(mcpgo.TextContent)
	if !ok {
		m.t.Fatalf("%s: content %T", tool, res.Content[0])
	}
	if !res.IsError {
		structured, err := json.Marshal(res.StructuredContent)
		if err != nil || !jsonEqual(structured, []byte(text.Text)) {
			m.t.Fatalf("%s: structured content %s differs from text %s", tool, structured, text.Text)
		}
	}
	return text.Text, res.IsError
}

// ok calls a tool that must succeed and decodes its result into out.
func (m *mcpClient) ok(tool string, args map[string]any, out any) {
	m.t.Helper()
	text, isErr := m.call(tool, args)
	if isErr {
		m.t.Fatalf("%s(%v): tool error %q", tool, args, text)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(text), out); err != nil {
			m.t.Fatalf("%s: %v in %s", tool, err, text)
		}
	}
}

// fails calls a tool that must give a tool error and returns its text.
func (m *mcpClient) fails(tool string, args map[string]any) string {
	m.t.Helper()
	text, isErr := m.call(tool, args)
	if !isErr {
		m.t.Fatalf("%s(%v) succeeded: %s", tool, args, text)
	}
	return text
}

// envArgs is the arguments of a tool call on env: environment_id and the name, value pairs kv.
func envArgs(env string, kv ...any) map[string]any {
	m := map[string]any{argEnv: env}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
