// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/router"
)

type envResult struct {
	ID      string `json:"environment_id"`
	Status  string `json:"status"`
	Host    string `json:"host"`
	Runtime string `json:"runtime"`
	Name    string `json:"name"`
}

type execResult struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode int    `json:"exit_code"`
	TimedOut bool   `json:"timed_out"`
}

// TestEndToEnd drives two routers through real MCP clients over HTTP, each request going to
// the other router, against a real JetStream server, the real projector and a fake host.
func TestEndToEnd(t *testing.T) {
	small := func(cfg *router.Config) { cfg.Limits.MaxCodeBytes, cfg.Limits.MaxFileBytes = 10000, 64<<10 } // keeps -race fast
	c := newCluster(t, 2, small, hostStarts)
	for _, proto := range []string{"", "2025-06-18"} {
		t.Run("protocol="+proto, func(t *testing.T) {
			c.t = t
			acme := c.client(c.key("acme"), proto)
			globex := c.client(c.key("globex"), proto)

			tools, err := acme.c.ListTools(c.ctx, mcpgo.ListToolsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tool := range tools.Tools {
				names = append(names, tool.Name)
				if tool.Name == toolCreate {
					ttl, _ := tool.InputSchema.Properties["timeout_minutes"].(map[string]any)
					if ttl["minimum"] != 1.0 || ttl["maximum"] != 60.0 {
						t.Errorf("timeout_minutes schema %v", ttl)
					}
				}
			}
			slices.Sort(names)
			want := []string{toolCreate, toolDestroy, toolExecute, toolFork, toolGet, toolInstall, toolKillProc, toolList, toolListFile, toolPause, toolRead,
				toolReadProc, toolResume, toolStart, toolWaitProc, toolWrite}
			if !slices.Equal(names, want) {
				t.Fatalf("tools %v, want %v", names, want)
			}

			var env envResult
			acme.ok(toolCreate, map[string]any{"runtime": "python", "name": "calc"}, &env)
			if env.Status != events.StateRunning || env.Host != "host-1" || env.Name != "calc" || events.ValidID(env.ID) != nil {
				t.Fatalf("created %+v", env)
			}
			id := map[string]any{argEnv: env.ID}
			with := func(kv ...any) map[string]any { return envArgs(env.ID, kv...) }

			var out execResult
			acme.ok(toolExecute, with("code", "print(6*7)"), &out)
			if out.Stdout != "42\n" || out.ExitCode != 0 {
				t.Fatalf("execute: %+v", out)
			}
			acme.ok(toolExecute, with("code", "import sys; sys.exit(3)"), &out)
			if out.ExitCode != 3 || out.Stderr != "boom\n" {
				t.Fatalf("non-zero exit: %+v", out)
			}
			acme.ok(toolExecute, with("code", "ls", "language", "shell"), &out)
			if out.Stdout != "shell:ls" {
				t.Fatalf("language override: %+v", out)
			}
			acme.ok(toolExecute, with("code", "import time; time.sleep(99)", "timeout_seconds", 1), &out)
			if !out.TimedOut {
				t.Fatalf("timeout: %+v", out)
			}

			acme.ok(toolWrite, with("path", "/home/sandbox/a.txt", "content", "hello"), nil)
			blob := []byte{0, 1, 2, 0xff, 0xfe}
			acme.ok(toolWrite, with("path", "/home/sandbox/b.bin", "content", base64.StdEncoding.EncodeToString(blob), "encoding", "base64"), nil)
			var file fileContent
			acme.ok(toolRead, with("path", "/home/sandbox/a.txt"), &file)
			if file.Content != "hello" || file.Encoding != encUTF8 {
				t.Fatalf("read text: %+v", file)
			}
			acme.ok(toolRead, with("path", "/home/sandbox/b.bin"), &file)
			if got, _ := base64.StdEncoding.DecodeString(file.Content); file.Encoding != encBase64 || string(got) != string(blob) {
				t.Fatalf("read binary: %+v", file)
			}
			var listing hostrpc.ListFilesResult
			acme.ok(toolListFile, id, &listing)
			if listing.Count != 2 || listing.Path != hostrpc.HomeDir {
				t.Fatalf("list_files: %+v", listing)
			}
			var installed execResult
			acme.ok(toolInstall, with("packages", "requests numpy==2.1.0"), &installed)
			if installed.Stdout != "installed requests,numpy==2.1.0\n" {
				t.Fatalf("install: %+v", installed)
			}

			// The list comes from the view, which follows the log closely but not instantly.
			var list envList
			eventually(t, func() bool {
				acme.ok(toolList, nil, &list)
				return list.Count == 1 && list.Environments[0].ID == env.ID
			}, "acme list: %+v", &list)

			// Another tenant sees nothing of acme's environment.
			globex.ok(toolList, nil, &list)
			if list.Count != 0 {
				t.Fatalf("globex sees %+v", list)
			}
			notFound := `environment "` + env.ID + `" not found`
			for _, tc := range []struct {
				tool string
				args map[string]any
			}{
				{toolExecute, with("code", "print(1)")}, {toolGet, id}, {toolDestroy, id},
				{toolRead, with("path", "/home/sandbox/a.txt")}, {toolWrite, with("path", "/x", "content", "x")},
				{toolListFile, id}, {toolInstall, with("packages", "x")}, {toolStart, with("code", "print(1)")},
				{toolReadProc, with(argProcess, "p-1")}, {toolWaitProc, with(argProcess, "p-1")}, {toolKillProc, with(argProcess, "p-1")},
			} {
				if msg := globex.fails(tc.tool, tc.args); !strings.Contains(msg, notFound) {
					t.Errorf("globex %s: %q, want %q", tc.tool, msg, notFound)
				}
			}

			// Mistakes get errors that say what was wrong and what is allowed.
			for _, tc := range []struct {
				tool string
				args map[string]any
				want string
			}{
				{toolCreate, map[string]any{"runtime": "ruby"}, `runtime "ruby" is not allowed: use one of python, node, shell`},
				{toolCreate, map[string]any{"runtime": "python", "timeout_minutes": 61}, "timeout_minutes 61 is out of range: use 1 to 60"},
				{toolCreate, map[string]any{"runtime": "python", "memory_mib": 1 << 20}, "memory_mib 1048576 is out of range: use 128 to 4096"},
				{toolCreate, map[string]any{"runtime": "python", "cpus": 99}, "cpus 99 is out of range: use 1 to 4"},
				{toolExecute, map[string]any{argEnv: "nope", "code": "1"}, `environment "nope" not found`},
				{toolExecute, map[string]any{argEnv: "../x", "code": "1"}, `environment "../x" not found`},
				{toolExecute, with("code", "1", "timeout_seconds", 301), "timeout_seconds 301 is out of range: use 1 to 300"},
				{toolExecute, with("code", strings.Repeat("x", 10001)), "code is 10001 bytes; the limit is 10000 bytes"},
				{toolExecute, with("code", "1", "language", "go"), `language "go" is not allowed`},
				{toolWrite, with("path", "/big", "content", strings.Repeat("x", 64<<10+1)), "content is 65537 bytes; the limit is 65536 bytes per file"},
				{toolWrite, with("path", "rel.txt", "content", "x"), `path "rel.txt" is not absolute`},
				{toolWrite, with("path", "/x", "content", "!!", "encoding", "base64"), "content is not valid base64"},
				{toolRead, with("path", "/home/sandbox/missing"), "no such file: /home/sandbox/missing"},
				{toolInstall, with("packages", "requests; rm -rf /"), `invalid pip package spec "requests;"`},
				{toolInstall, with("packages", "no-such-package"), "pip install failed (exit status 1):\nERROR: No matching distribution found for no-such-package"},
				{toolGet, map[string]any{"environmentId": env.ID}, `unknown argument "environmentId"; it takes environment_id`},
			} {
				if msg := acme.fails(tc.tool, tc.args); !strings.Contains(msg, tc.want) {
					t.Errorf("%s(%.80v): %q, want %q", tc.tool, tc.args, msg, tc.want)
				}
			}

			// An internal failure is a protocol error naming the request id that the log carries.
			req := mcpgo.CallToolRequest{}
			req.Params.Name, req.Params.Arguments = toolExecute, with("code", "crash")
			if _, err := acme.c.CallTool(c.ctx, req); err == nil || !strings.Contains(err.Error(), "internal error in execute (request id ") ||
				!strings.Contains(err.Error(), "disk on fire") {
				t.Errorf("internal failure: %v", err)
			}

			var detail router.EnvDetail
			acme.ok(toolGet, id, &detail)
			if detail.Status != events.StateRunning || detail.Host != "host-1" || detail.StartedAt == nil || len(detail.History) < 4 {
				t.Fatalf("get: %+v", detail)
			}

			var destroyed router.DestroyResult
			acme.ok(toolDestroy, id, &destroyed)
			if destroyed.Status != events.StateDestroyed {
				t.Fatalf("destroy: %+v", destroyed)
			}
			acme.ok(toolDestroy, id, &destroyed) // idempotent
			if msg := acme.fails(toolExecute, with("code", "print(1)")); !strings.Contains(msg, "is not running (state: destroyed)") {
				t.Errorf("execute after destroy: %q", msg)
			}
			eventually(t, func() bool {
				acme.ok(toolList, nil, &list)
				return list.Count == 0
			}, "list after destroy: %+v", &list)

			// The stream holds the lifecycle, in order, with the caller as principal.
			evs, _, err := c.Log.Load(c.ctx, events.EnvAggregate(env.Host, env.ID))
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, ev := range evs {
				types = append(types, ev.Type)
			}
			wantTypes := []string{events.EnvRequested, events.EnvPlaced, events.EnvStarting, events.EnvStarted,
				events.EnvDestroyRequested, events.EnvDestroyed}
			if !slices.Equal(types, wantTypes) {
				t.Fatalf("events %v, want %v", types, wantTypes)
			}
			if !strings.HasPrefix(evs[0].Principal, "acme/") || evs[0].Correlation == "" || evs[1].Causation != evs[0].ID {
				t.Fatalf("requested %+v placed %+v", evs[0], evs[1])
			}
			if _, err := events.FoldEnv(evs); err != nil {
				t.Fatal(err)
			}
			for _, h := range c.hosts[0].headers() {
				if !strings.HasPrefix(h.Get(hostrpc.HeaderPrincipal), "acme/") || h.Get(hostrpc.HeaderCorrelation) == "" {
					t.Fatalf("rpc headers %v", h)
				}
			}
			// Both routers served calls.
			if acme.rr.n.Load() < 4 {
				t.Fatalf("only %d requests", acme.rr.n.Load())
			}
		})
	}
	c.t = t

	// Without a key, or with a bad one: 401 with a WWW-Authenticate header.
	for _, auth := range []string{"", "Bearer wgl_nope", "Basic abc"} {
		req, _ := http.NewRequest("POST", c.urls[1], strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("auth %q: %d %q %s", auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}

	// Health, readiness and metrics.
	base := strings.TrimSuffix(c.urls[0], "/mcp")
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": `waggle_router_requests_total{result="ok",router="router-1",tool="execute"}`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// TestPlacementFailures covers the ways a create can fail, each with a message that says why.
func TestPlacementFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modes  []hostMode
		adjust func(*router.Config)
		want   string
		types  []string // the first events of the last environment tried
	}{
		{name: "no live host", want: "no live host"},
		{name: "rejected everywhere", modes: []hostMode{hostRejects, hostRejects},
			want:  "no host accepted the environment: host host-1 rejected it (no room: 0 MiB free); host host-2 rejected it (no room: 0 MiB free)",
			types: []string{events.EnvRequested, events.EnvPlaced, events.EnvRejected}},
		{name: "failed", modes: []hostMode{hostFails},
			want:  "failed on host host-1 while starting: image python not found on host",
			types: []string{events.EnvRequested, events.EnvPlaced, events.EnvStarting, events.EnvFailed}},
		{name: "boot timeout", modes: []hostMode{hostSilent}, adjust: func(c *router.Config) { c.BootTimeout = 300 * time.Millisecond },
			want:  "host host-1 did not start environment",
			types: []string{events.EnvRequested, events.EnvPlaced, events.EnvDestroyRequested}},
		{name: "no capacity", modes: []hostMode{hostStarts}, adjust: func(c *router.Config) { c.MaxMemoryMiB, c.MaxMemoryMiBPerTenant = 1<<20, 0 },
			want: "no capacity: the environment needs 32768 MiB"},
		{name: "tenant limit", modes: []hostMode{hostStarts}, adjust: func(c *router.Config) { c.MaxMemoryMiBPerTenant = 256 },
			want: "would exceed its limit of 256 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 1, tc.adjust, tc.modes...)
			cl := c.client(c.key("acme"), "")
			args := map[string]any{"runtime": "node"}
			if tc.name == "no capacity" {
				args["memory_mib"] = 32768
			}
			msg := cl.fails(toolCreate, args)
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error %q, want %q", msg, tc.want)
			}
			if tc.types == nil {
				return
			}
			var last []*events.Event
			err := c.Log.Replay(c.ctx, events.Position{}, []string{"waggle.env.>"}, func(ev *events.Event) error {
				if ev.Type == events.EnvRequested {
					last = nil
				}
				last = append(last, ev)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, ev := range last {
				types = append(types, ev.Type)
			}
			if len(types) < len(tc.types) || !slices.Equal(types[:len(tc.types)], tc.types) {
				t.Fatalf("events %v, want them to start with %v", types, tc.types)
			}
		})
	}
}

// TestRejectedPlacesElsewhere: a host that rejects is skipped and the create lands elsewhere.
func TestRejectedPlacesElsewhere(t *testing.T) {
	c := newCluster(t, 1, nil, hostRejects, hostStarts)
	cl := c.client(c.key("acme"), "")
	for range 4 {
		var env envResult
		cl.ok(toolCreate, map[string]any{"runtime": "shell"}, &env)
		if env.Host != "host-2" {
			t.Fatalf("placed on %s", env.Host)
		}
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
	}
}

func TestNoAuthOnlyOnLoopback(t *testing.T) {
	cfg := router.DefaultConfig()
	cfg.Listen, cfg.NoAuth = "0.0.0.0:0", true
	if _, err := router.New(cfg, router.Deps{}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("New with --no-auth on 0.0.0.0: %v", err)
	}
}
