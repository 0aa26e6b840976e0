// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// TestUp drives a `waggle up` (a separate process with one host agent running real microVMs
// and two routers) through real MCP clients over HTTP: mcp-go, the official TypeScript SDK and
// `waggle bench`. Then it checks the event stream and the audit chain, and that Ctrl-C leaves
// no VM behind.
func TestUp(t *testing.T) {
	vmtest.Require(t)
	vmtest.Kernel(t)
	for _, img := range []string{"python", "node", "shell"} {
		vmtest.Image(t, img)
	}
	up := startUp(t, upSetup{hosts: 1, routers: 2,
		extra: []string{"--capacity-memory", "4096", "--capacity-cpus", "8", "--max-environments", "8"}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	calls := newCallLog()

	var live string // an environment left running for Ctrl-C
	t.Run("mcp-go", func(t *testing.T) { live = testUpMCPGo(ctx, t, up, calls) })
	t.Run("typescript-sdk", func(t *testing.T) { testUpTypeScriptSDK(t, up, calls) })
	t.Run("inspector", func(t *testing.T) { testUpInspector(t, up, calls) })
	t.Run("bench", func(t *testing.T) { testUpBench(t, up) })
	var lastSeq uint64
	t.Run("events-and-audit", func(t *testing.T) { lastSeq = testUpEvents(ctx, t, up, calls) })
	t.Run("ctrl-c", func(t *testing.T) {
		if live != "" && len(qemuPIDs(up.dataDir)) == 0 {
			t.Errorf("no QEMU process of %s found while environment %s runs: the check below sees nothing", up.dataDir, live)
		}
		start := time.Now()
		if err := up.stop(t, 60*time.Second); err != nil {
			t.Errorf("waggle up after SIGINT: %v (want exit status 0)", err)
		}
		t.Logf("waggle up stopped %s after SIGINT", time.Since(start).Round(time.Millisecond))
		up.checkNoQEMU(t)
	})
	t.Run("restart keeps history and key", func(t *testing.T) {
		again := startUp(t, upSetup{dataDir: up.dataDir, hosts: 0, routers: 1})
		s := dialT(ctx, t, again.urls[0], up.key, calls)
		var l envListOut
		s.ok("list_environments", nil, &l)
		log := again.openLog(ctx, t)
		if live != "" {
			evs, _, err := log.Load(ctx, events.EnvAggregate("host1", live))
			var types []string
			for _, ev := range evs {
				types = append(types, ev.Type)
			}
			// Ctrl-C drains the host: the environment left running was destroyed, and says so.
			if err != nil || len(types) == 0 || types[len(types)-1] != events.EnvDestroyed || l.Count != 0 {
				t.Errorf("after Ctrl-C: environment %s has events %v (%v); list_environments shows %+v", live, types, err, l.Environments)
			}
		}
		if seq, err := log.LastSeq(ctx); err != nil || seq < lastSeq {
			t.Errorf("after a restart the stream ends at %d (%v), before it was at %d", seq, err, lastSeq)
		}
		if err := again.stop(t, 60*time.Second); err != nil {
			t.Errorf("restarted waggle up after SIGINT: %v", err)
		}
	})
}

// callLog counts the successful calls per environment that must each leave an audit event,
// and which environments were destroyed.
type callLog struct {
	mu        sync.Mutex
	envs      map[string]map[string]int // env -> event type -> calls
	destroyed map[string]bool
}

func newCallLog() *callLog {
	return &callLog{envs: map[string]map[string]int{}, destroyed: map[string]bool{}}
}

func (c *callLog) add(env, eventType string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.envs[env] == nil {
		c.envs[env] = map[string]int{}
	}
	c.envs[env][eventType]++
}

func (c *callLog) markDestroyed(env string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.destroyed[env] = true
}

// mcpT is an MCP session whose failures fail the test.
type mcpT struct {
	t     *testing.T
	ctx   context.Context
	s     *mcpSession
	calls *callLog
}

func dialT(ctx context.Context, t *testing.T, url, key string, calls *callLog) *mcpT {
	t.Helper()
	s, err := dialMCP(ctx, url, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &mcpT{t: t, ctx: ctx, s: s, calls: calls}
}

// auditType is the event type a successful call of a tool appends for its environment.
func auditType(tool string) string {
	switch tool {
	case "execute":
		return events.EnvExec
	case "write_file":
		return events.EnvFileWritten
	case "read_file":
		return events.EnvFileRead
	}
	return ""
}

// ok calls a tool that must succeed and decodes its result into out.
func (m *mcpT) ok(tool string, args map[string]any, out any) {
	m.t.Helper()
	if err := m.s.Call(m.ctx, tool, args, out); err != nil {
		m.t.Fatalf("%s(%s): %v", tool, briefArgs(args), err)
	}
	switch typ := auditType(tool); {
	case typ != "":
		m.calls.add(args["environment_id"].(string), typ)
	case tool == "destroy_environment":
		m.calls.markDestroyed(args["environment_id"].(string))
	}
}

// toolError calls a tool that must give a tool error and returns its text.
func (m *mcpT) toolError(tool string, args map[string]any) string {
	m.t.Helper()
	text, isErr, err := m.s.CallText(m.ctx, tool, args)
	switch {
	case err != nil:
		m.t.Fatalf("%s(%s): %v (want a tool error)", tool, briefArgs(args), err)
	case !isErr:
		m.t.Fatalf("%s(%s) succeeded: %s (want a tool error)", tool, briefArgs(args), text)
	}
	return text
}

// briefArgs shows a call's arguments with long values cut.
func briefArgs(args map[string]any) string {
	data, _ := json.Marshal(args)
	if len(data) > 200 {
		return string(data[:200]) + "..."
	}
	return string(data)
}

type envOut struct {
	ID      string `json:"environment_id"`
	Runtime string `json:"runtime"`
	Status  string `json:"status"`
	Host    string `json:"host"`
}

type execOut struct {
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	TimedOut   bool   `json:"timed_out"`
	Truncated  bool   `json:"truncated"`
}

type fileOut struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Encoding string `json:"encoding"`
	Content  string `json:"content"`
}

type listOut struct {
	Files []struct {
		Name  string `json:"name"`
		Size  int64  `json:"size"`
		IsDir bool   `json:"is_dir"`
	} `json:"files"`
}

type envListOut struct {
	Environments []envOut `json:"environments"`
	Count        int      `json:"count"`
}

// testUpMCPGo runs the whole tool set through mcp-go clients of both routers; it returns the
// id of an environment it leaves running.
func testUpMCPGo(ctx context.Context, t *testing.T, up *upProc, calls *callLog) string {
	r1 := dialT(ctx, t, up.urls[0], up.key, calls)
	r2 := dialT(ctx, t, up.urls[1], up.key, calls)

	t.Run("unauthorized", func(t *testing.T) {
		for _, key := range []string{"", "wgl_not-a-key"} {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, up.urls[0],
				strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("key %q: HTTP %d, want 401", key, resp.StatusCode)
			}
		}
	})

	tools, err := r1.s.c.ListTools(ctx, mcpgo.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	maxCode, maxFile := toolLimits(t, tools.Tools)

	// Three environments at once, created through both routers.
	envs := map[string]envOut{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i, rt := range []string{"python", "node", "shell"} {
		via := []*mcpT{r1, r2}[i%2]
		wg.Go(func() {
			start := time.Now()
			var e envOut
			if err := via.s.Call(ctx, "create_environment", map[string]any{"runtime": rt, "timeout_minutes": 10}, &e); err != nil {
				errs <- err
				return
			}
			t.Logf("create_environment %s: %s on %s in %s", rt, e.ID, e.Host, time.Since(start).Round(time.Millisecond))
			mu.Lock()
			envs[rt] = e
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { // whatever a failure left running
		if !t.Failed() {
			return
		}
		for _, e := range envs {
			_ = r1.s.Call(context.WithoutCancel(ctx), "destroy_environment", map[string]any{"environment_id": e.ID}, nil)
		}
	})
	py, node, sh := envs["python"].ID, envs["node"].ID, envs["shell"].ID
	for rt, e := range envs {
		if e.Runtime != rt || e.Status != "running" {
			t.Errorf("created %s environment: %+v, want runtime %s, status running", rt, e, rt)
		}
	}

	t.Run("execute", func(t *testing.T) {
		tests := []struct {
			name   string
			env    string
			via    *mcpT
			args   map[string]any
			stdout string
			stderr string
			code   int
		}{
			{"python through the other router", py, r2, map[string]any{"code": "print(6*7)"}, "42\n", "", 0},
			{"node", node, r1, map[string]any{"code": "console.log(6*7)"}, "42\n", "", 0},
			{"shell", sh, r2, map[string]any{"code": "echo $((6*7))"}, "42\n", "", 0},
			{"shell in the python environment", py, r1, map[string]any{"code": "echo $((6*7))", "language": "shell"}, "42\n", "", 0},
			{"python non-zero exit", py, r1, map[string]any{"code": "import sys\nprint('bye')\nsys.exit(3)"}, "bye\n", "", 3},
			{"shell stderr and exit code", sh, r1, map[string]any{"code": "echo oops >&2; exit 7"}, "", "oops\n", 7},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Generous: node starts slowly under TCG on a busy machine.
				args := map[string]any{"environment_id": tt.env, "timeout_seconds": 120}
				for k, v := range tt.args {
					args[k] = v
				}
				var res execOut
				start := time.Now()
				tt.via.ok("execute", args, &res)
				t.Logf("execute: %s round trip, %d ms in the guest", time.Since(start).Round(time.Millisecond), res.DurationMS)
				if res.Stdout != tt.stdout || res.Stderr != tt.stderr || res.ExitCode != tt.code || res.TimedOut || res.Truncated {
					t.Errorf("got %+v, want stdout %q, stderr %q, exit code %d", res, tt.stdout, tt.stderr, tt.code)
				}
			})
		}
	})

	t.Run("timeout", func(t *testing.T) {
		var res execOut
		start := time.Now()
		r2.ok("execute", map[string]any{"environment_id": sh, "code": "sleep 30", "timeout_seconds": 1}, &res)
		if took := time.Since(start); !res.TimedOut || took > 20*time.Second {
			t.Errorf("sleep 30 with timeout_seconds 1: %+v after %s, want timed_out soon after 1 s", res, took)
		}
		// The environment still works after a timeout.
		r1.ok("execute", map[string]any{"environment_id": sh, "code": "echo still here"}, &res)
		if res.Stdout != "still here\n" {
			t.Errorf("after the timeout: %+v", res)
		}
	})

	t.Run("files", func(t *testing.T) {
		text := "hello\nwaggle ✓\n"
		blob := make([]byte, 256)
		for i := range blob {
			blob[i] = byte(i)
		}
		r1.ok("write_file", map[string]any{"environment_id": py, "path": "/home/sandbox/dir/hello.txt", "content": text}, nil)
		r2.ok("write_file", map[string]any{"environment_id": py, "path": "/home/sandbox/dir/sub/blob.bin",
			"content": base64.StdEncoding.EncodeToString(blob), "encoding": "base64"}, nil)

		var f fileOut
		r2.ok("read_file", map[string]any{"environment_id": py, "path": "/home/sandbox/dir/hello.txt"}, &f)
		if f.Content != text || f.Encoding != "utf-8" || f.Size != int64(len(text)) {
			t.Errorf("read_file hello.txt: %+v, want %q", f, text)
		}
		for _, enc := range []any{"base64", nil} { // binary content comes back as base64 either way
			args := map[string]any{"environment_id": py, "path": "/home/sandbox/dir/sub/blob.bin"}
			if enc != nil {
				args["encoding"] = enc
			}
			r1.ok("read_file", args, &f)
			got, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil || f.Encoding != "base64" || !bytes.Equal(got, blob) {
				t.Errorf("read_file blob.bin (encoding %v): %+v, %v", enc, f, err)
			}
		}

		var ls listOut
		r1.ok("list_files", map[string]any{"environment_id": py, "path": "/home/sandbox/dir"}, &ls)
		if got := fileNames(ls); !slices.Equal(got, []string{"hello.txt", "sub/"}) {
			t.Errorf("list_files dir: %v, want hello.txt and sub/", got)
		}
		r2.ok("list_files", map[string]any{"environment_id": py, "path": "/home/sandbox/dir", "recursive": true}, &ls)
		if got := fileNames(ls); !slices.Equal(got, []string{"hello.txt", "sub/", "sub/blob.bin"}) {
			t.Errorf("list_files dir recursive: %v", got)
		}

		// The guest sees what write_file wrote.
		var res execOut
		r2.ok("execute", map[string]any{"environment_id": py,
			"code": "print(open('/home/sandbox/dir/hello.txt').read().split()[0], len(open('/home/sandbox/dir/sub/blob.bin','rb').read()))"}, &res)
		if res.Stdout != "hello 256\n" {
			t.Errorf("reading the files in the guest: %+v", res)
		}
	})

	t.Run("mistakes", func(t *testing.T) {
		code := r1.toolError("execute", map[string]any{"environment_id": py, "code": strings.Repeat("x", maxCode+1)})
		if !strings.Contains(code, "limit") || !strings.Contains(code, strconv.Itoa(maxCode)) {
			t.Errorf("too much code: %q, want the limit %d named", code, maxCode)
		}
		file := r2.toolError("write_file", map[string]any{"environment_id": py, "path": "/home/sandbox/big", "content": strings.Repeat("x", maxFile+1)})
		if !strings.Contains(file, "limit") || !strings.Contains(file, strconv.Itoa(maxFile)) {
			t.Errorf("too large a file: %q, want the limit %d named", file, maxFile)
		}
		timeout := r1.toolError("execute", map[string]any{"environment_id": py, "code": "print(1)", "timeout_seconds": 100000})
		if !strings.Contains(timeout, "timeout_seconds") {
			t.Errorf("timeout out of range: %q", timeout)
		}
		runtime := r1.toolError("create_environment", map[string]any{"runtime": "cobol"})
		if !strings.Contains(runtime, "cobol") || !strings.Contains(runtime, "python") {
			t.Errorf("unknown runtime: %q, want the allowed runtimes named", runtime)
		}
	})

	t.Run("unknown and foreign environments", func(t *testing.T) {
		unknown := py[:len(py)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(py, "0")]
		stdout, stderr, code := runWaggle(t, "token", "create", "--tenant", "other", "--nats-url", up.natsURL, "--nats-creds", up.creds("admin"))
		if code != 0 {
			t.Fatalf("waggle token create: exit %d: %s", code, stderr)
		}
		other := dialT(ctx, t, up.urls[1], strings.TrimSpace(stdout), calls)

		var mine, theirs envListOut
		r2.ok("list_environments", nil, &mine)
		other.ok("list_environments", nil, &theirs)
		if mine.Count != 3 || theirs.Count != 0 || len(theirs.Environments) != 0 {
			t.Errorf("list_environments: first tenant sees %d, the other %d (%+v); want 3 and 0", mine.Count, theirs.Count, theirs.Environments)
		}
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"execute", map[string]any{"code": "print(6*7)"}},
			{"get_environment", nil},
			{"read_file", map[string]any{"path": "/home/sandbox/dir/hello.txt"}},
			{"write_file", map[string]any{"path": "/home/sandbox/x", "content": "x"}},
			{"list_files", nil},
			{"destroy_environment", nil},
		} {
			args := func(env string) map[string]any {
				a := map[string]any{"environment_id": env}
				for k, v := range c.args {
					a[k] = v
				}
				return a
			}
			u := r1.toolError(c.tool, args(unknown))
			if !strings.Contains(u, "not found") || !strings.Contains(u, unknown) {
				t.Errorf("%s on an unknown environment: %q", c.tool, u)
			}
			// Another tenant's environment gets the same answer as one that does not exist.
			if f := other.toolError(c.tool, args(py)); f != strings.ReplaceAll(u, unknown, py) {
				t.Errorf("%s on another tenant's environment: %q, want %q", c.tool, f, strings.ReplaceAll(u, unknown, py))
			}
		}
	})

	t.Run("destroy", func(t *testing.T) {
		var g struct {
			envOut
			History []struct {
				Type string `json:"type"`
			} `json:"history"`
		}
		r1.ok("get_environment", map[string]any{"environment_id": node}, &g)
		if g.Status != "running" || len(g.History) < 4 {
			t.Errorf("get_environment %s: %+v, want it running with its history", node, g)
		}
		for i, id := range []string{py, node} { // the shell environment stays for Ctrl-C
			[]*mcpT{r1, r2}[i%2].ok("destroy_environment", map[string]any{"environment_id": id}, nil)
		}
		var l envListOut
		deadline := time.Now().Add(30 * time.Second)
		for r2.ok("list_environments", nil, &l); l.Count != 1 && time.Now().Before(deadline); r2.ok("list_environments", nil, &l) {
			time.Sleep(500 * time.Millisecond)
		}
		if l.Count != 1 || l.Environments[0].ID != sh {
			t.Errorf("after destroying two of three: list_environments shows %+v", l.Environments)
		}
		gone := r1.toolError("execute", map[string]any{"environment_id": py, "code": "print(1)"})
		if !strings.Contains(gone, "destroyed") {
			t.Errorf("execute on a destroyed environment: %q, want it to say so", gone)
		}
	})
	return sh
}

// toolLimits reads the code limit of execute (its schema's maxLength) and the file limit of
// write_file (its description) from the tool list, checking that every tool is there.
func toolLimits(t *testing.T, tools []mcpgo.Tool) (maxCode, maxFile int) {
	t.Helper()
	var names []string
	for _, tool := range tools {
		names = append(names, tool.Name)
		switch tool.Name {
		case "execute":
			var schema struct {
				Properties map[string]struct {
					MaxLength int `json:"maxLength"`
				} `json:"properties"`
			}
			data, _ := json.Marshal(tool.InputSchema)
			if err := json.Unmarshal(data, &schema); err != nil {
				t.Fatal(err)
			}
			maxCode = schema.Properties["code"].MaxLength
		case "write_file":
			if m := regexp.MustCompile(`at most (\d+) bytes`).FindStringSubmatch(tool.Description); m != nil {
				maxFile, _ = strconv.Atoi(m[1])
			}
		}
	}
	slices.Sort(names)
	want := []string{"create_environment", "destroy_environment", "execute", "fork_environment", "get_environment", "install_packages",
		"kill_process", "list_environments", "list_files", "pause_environment", "read_file", "read_process", "resume_environment",
		"start_process", "wait_process", "write_file"}
	if !slices.Equal(names, want) {
		t.Errorf("tools %v, want %v", names, want)
	}
	if maxCode <= 0 || maxFile <= 0 {
		t.Fatalf("no limits in the tool list: code %d, file %d", maxCode, maxFile)
	}
	return maxCode, maxFile
}

// fileNames are the sorted entry names of a listing, directories with a trailing slash.
func fileNames(ls listOut) []string {
	var names []string
	for _, f := range ls.Files {
		if f.IsDir {
			names = append(names, strings.TrimSuffix(f.Name, "/")+"/")
		} else {
			names = append(names, f.Name)
		}
	}
	slices.Sort(names)
	return names
}

// mcpSDKModules finds the node_modules directory holding @modelcontextprotocol/sdk: in NODE_PATH
// or in .cache/mcp-sdk of the repository (`go tool task mcp-sdk`).
func mcpSDKModules(t *testing.T) string {
	t.Helper()
	dirs := append(filepath.SplitList(os.Getenv("NODE_PATH")), filepath.Join(repoCache(t), "mcp-sdk", "node_modules"))
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "@modelcontextprotocol", "sdk", "package.json")); err == nil {
			return dir
		}
	}
	missingTool(t, "the TypeScript MCP SDK is not installed (go tool task mcp-sdk)")
	return ""
}

func testUpTypeScriptSDK(t *testing.T, up *upProc, calls *callLog) {
	modules := mcpSDKModules(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	// ES modules resolve packages from the script's own directory, not NODE_PATH: run a copy
	// beside a node_modules link.
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("testdata", "mcp-sdk-client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = dir
	cmd.Env = append(upEnv(), "WAGGLE_URL="+up.urls[1], "WAGGLE_KEY="+up.key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("TypeScript SDK session took %s", time.Since(start).Round(time.Millisecond))

	type step struct {
		IsError bool            `json:"isError"`
		Text    string          `json:"text"`
		JSON    json.RawMessage `json:"json"`
	}
	var out struct {
		Tools                                 []string `json:"tools"`
		Create, Execute, Write, Read, Destroy step
		Progress                              struct {
			Notes []struct {
				AtMS     int64   `json:"at_ms"`
				Progress float64 `json:"progress"`
				Message  string  `json:"message"`
			} `json:"notes"`
			ResultMS int64 `json:"result_ms"`
			Result   step  `json:"result"`
		} `json:"progress"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node client.mjs: %v, %v\nstdout: %s\nstderr: %s", runErr, err, stdout.String(), stderr.String())
	}
	if runErr != nil || out.Error != "" {
		t.Fatalf("node client.mjs: %v: %s\nstderr: %s", runErr, out.Error, stderr.String())
	}
	if !slices.Contains(out.Tools, "create_environment") || !slices.Contains(out.Tools, "execute") {
		t.Errorf("tools: %v", out.Tools)
	}
	for name, s := range map[string]step{"create": out.Create, "execute": out.Execute, "write": out.Write, "read": out.Read, "destroy": out.Destroy} {
		if s.IsError || len(s.JSON) == 0 {
			t.Errorf("%s: %+v", name, s)
		}
	}
	var env envOut
	var res execOut
	var f fileOut
	if err := errors.Join(json.Unmarshal(out.Create.JSON, &env), json.Unmarshal(out.Execute.JSON, &res), json.Unmarshal(out.Read.JSON, &f)); err != nil {
		t.Fatal(err)
	}
	if env.Status != "running" || res.Stdout != "42\n" || res.ExitCode != 0 || f.Content != "from the TypeScript SDK\n" {
		t.Errorf("TypeScript SDK session: create %+v, execute %+v, read %+v", env, res, f)
	}
	// The ticking program's output came as progress notifications while it ran, the first
	// within 1.5 s of the call (python's start included), then the whole of it in the result.
	p := out.Progress
	var ticks execOut
	if err := json.Unmarshal(p.Result.JSON, &ticks); err != nil || p.Result.IsError || ticks.Stdout != "tick 0\ntick 1\ntick 2\ntick 3\n" {
		t.Errorf("execute with progress: %+v (%v)", p.Result, err)
	}
	var streamed string
	for i, n := range p.Notes {
		streamed += strings.TrimPrefix(n.Message, "stdout: ")
		if n.Progress != float64(i+1) || !strings.HasPrefix(n.Message, "stdout: tick ") {
			t.Errorf("progress notification %d: %+v", i, n)
		}
	}
	switch {
	case len(p.Notes) < 2:
		t.Errorf("%d progress notifications, want at least 2: %+v", len(p.Notes), p.Notes)
	case p.Notes[0].AtMS > 1500:
		t.Errorf("first progress notification %d ms after the call, want at most 1500", p.Notes[0].AtMS)
	case streamed != ticks.Stdout:
		t.Errorf("notifications carried %q, the result %q", streamed, ticks.Stdout)
	}
	var at []int64
	for _, n := range p.Notes {
		at = append(at, n.AtMS)
	}
	t.Logf("TypeScript SDK: %d progress notifications at %v ms after the call, result at %d ms", len(p.Notes), at, p.ResultMS)
	calls.add(env.ID, events.EnvExec)
	calls.add(env.ID, events.EnvExec)
	calls.add(env.ID, events.EnvFileWritten)
	calls.add(env.ID, events.EnvFileRead)
	calls.markDestroyed(env.ID)
}

// testUpInspector drives the MCP Inspector's CLI (`go tool task mcp-inspector`, Node 22) as a
// user following README would: list the tools, then create a shell environment, run a command
// in it and destroy it, sending the API key as a header.
func testUpInspector(t *testing.T, up *upProc, calls *callLog) {
	node := node22(t)
	cli := npmTool(t, "mcp-inspector", filepath.Join("@modelcontextprotocol", "inspector", "clients", "launcher", "build", "index.js"), "mcp-inspector")
	home := t.TempDir() // the Inspector keeps a catalog in ~/.mcp-inspector
	inspect := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		args = append([]string{cli, "--cli", up.urls[0], "--transport", "http", "--header", "Authorization: Bearer " + up.key}, args...)
		cmd := exec.CommandContext(ctx, node, args...)
		cmd.Env = append(upEnv(), "HOME="+home, "NO_COLOR=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("inspector %s: %v\nstdout: %s\nstderr: %s", strings.Join(args[5:], " "), err, stdout.String(), stderr.String())
		}
		return stdout.Bytes()
	}
	// call runs a tool and decodes the JSON text of its result into v.
	call := func(v any, tool string, kv ...string) {
		t.Helper()
		var res struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			IsError bool `json:"isError"`
		}
		out := inspect(append([]string{"--method", "tools/call", "--tool-name", tool, "--tool-arg"}, kv...)...)
		if err := json.Unmarshal(out, &res); err != nil || res.IsError || len(res.Content) != 1 {
			t.Fatalf("inspector tools/call %s: %v: %s", tool, err, out)
		}
		if err := json.Unmarshal([]byte(res.Content[0].Text), v); err != nil {
			t.Fatalf("inspector tools/call %s: %v: %s", tool, err, res.Content[0].Text)
		}
	}

	var list struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(inspect("--method", "tools/list"), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	want := []string{"create_environment", "destroy_environment", "execute", "fork_environment", "get_environment",
		"install_packages", "kill_process", "list_environments", "list_files", "pause_environment", "read_file",
		"read_process", "resume_environment", "start_process", "wait_process", "write_file"}
	if slices.Sort(names); !slices.Equal(names, want) {
		t.Errorf("inspector tools/list: %v, want %v", names, want)
	}
	var env envOut
	call(&env, "create_environment", "runtime=shell", "timeout_minutes=5")
	if env.Status != "running" || env.Runtime != "shell" {
		t.Fatalf("inspector create_environment: %+v", env)
	}
	var res execOut
	call(&res, "execute", "environment_id="+env.ID, "code=echo $((6*7)) from the inspector")
	if res.Stdout != "42 from the inspector\n" || res.ExitCode != 0 {
		t.Errorf("inspector execute: %+v", res)
	}
	var gone struct {
		Status string `json:"status"`
	}
	call(&gone, "destroy_environment", "environment_id="+env.ID)
	if gone.Status != events.StateDestroyed {
		t.Errorf("inspector destroy_environment: %+v", gone)
	}
	calls.add(env.ID, events.EnvExec)
	calls.markDestroyed(env.ID)
}

func testUpBench(t *testing.T, up *upProc) {
	out, err := waggle(t, "bench", "--url", up.urls[0], "--key", up.key, "--runtime", "python", "--progress=false",
		"--creates", "2", "--parallel", "2", "--execs", "6", "--nats-url", up.natsURL, "--nats-creds", up.creds("router"), "--json", "calls")
	if err != nil {
		t.Fatalf("waggle bench: %v\n%s", err, out)
	}
	var res benchReport
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Calls == nil {
		t.Fatalf("waggle bench --json: %v\n%s", err, out)
	}
	rep := res.Calls
	for name, st := range map[string]benchStats{"create": rep.Create, "execute": rep.Execute, "destroy": rep.Destroy} {
		if st.Errors != 0 || st.P50MS <= 0 || st.P99MS < st.P50MS {
			t.Errorf("bench %s: %+v", name, st)
		}
	}
	if rep.Create.Calls != 2 || rep.Execute.Calls != 6 || rep.Destroy.Calls != 2 {
		t.Errorf("bench calls: create %d, execute %d, destroy %d; want 2, 6, 2", rep.Create.Calls, rep.Execute.Calls, rep.Destroy.Calls)
	}
	if rep.Direct == nil || rep.RouterAddedMS == nil || rep.Direct.Calls != 6 || rep.Direct.Errors != 0 {
		t.Fatalf("bench with --nats-url: direct %+v, router added %v", rep.Direct, rep.RouterAddedMS)
	}
	t.Logf("waggle bench (python, TCG): create_environment p50 %.0f ms p99 %.0f ms; execute p50 %.1f ms p99 %.1f ms; direct host exec p50 %.1f ms; router adds %.1f ms",
		rep.Create.P50MS, rep.Create.P99MS, rep.Execute.P50MS, rep.Execute.P99MS, rep.Direct.P50MS, *rep.RouterAddedMS)
}

// testUpEvents checks the event stream against the calls made and runs the audit commands; it
// returns the stream's last sequence.
func testUpEvents(ctx context.Context, t *testing.T, up *upProc, calls *callLog) uint64 {
	log := up.openLog(ctx, t)
	last, err := log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byEnv := map[string][]*events.Event{}
	err = log.Replay(ctx, events.Position{Seq: 1}, nil, func(ev *events.Event) error {
		if ev.Env != "" {
			byEnv[ev.Env] = append(byEnv[ev.Env], ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	calls.mu.Lock()
	defer calls.mu.Unlock()
	for env, want := range calls.envs {
		// The order of events of every environment that was created (and destroyed).
		lifecycle := []string{events.EnvRequested, events.EnvPlaced, events.EnvStarting, events.EnvStarted}
		if calls.destroyed[env] {
			lifecycle = append(lifecycle, events.EnvDestroyRequested, events.EnvDestroyed)
		}
		evs := byEnv[env]
		var types []string
		got := map[string]int{}
		for _, ev := range evs {
			types = append(types, ev.Type)
			got[ev.Type]++
		}
		if !isSubsequence(lifecycle, types) {
			t.Errorf("environment %s: events %v lack the lifecycle %v", env, types, lifecycle)
		}
		for typ, n := range want {
			if got[typ] != n {
				t.Errorf("environment %s: %d %s events for %d calls; events %v", env, got[typ], typ, n, types)
			}
		}
		// Audit events name the caller that created the environment.
		for _, ev := range evs {
			if (ev.Type == events.EnvExec || ev.Type == events.EnvFileWritten || ev.Type == events.EnvFileRead) &&
				ev.Principal != evs[0].Principal {
				t.Errorf("environment %s: %s event by %q, but %q created it", env, ev.Type, ev.Principal, evs[0].Principal)
			}
		}
	}

	stdout, stderr, code := runWaggle(t, "audit", "verify", "--nats-url", up.natsURL, "--nats-creds", up.creds("operator"))
	if code != 0 {
		t.Errorf("waggle audit verify: exit %d\n%s%s", code, stdout, stderr)
	}
	envs := slices.Sorted(maps.Keys(calls.envs))
	if len(envs) == 0 {
		t.Fatal("no calls recorded")
	}
	stdout, stderr, code = runWaggle(t, "audit", "log", "--env", envs[0], "--nats-url", up.natsURL, "--nats-creds", up.creds("operator"))
	if code != 0 || !strings.Contains(stdout, "exec") {
		t.Errorf("waggle audit log --env %s: exit %d, no exec in\n%s%s", envs[0], code, stdout, stderr)
	}
	return last
}

// isSubsequence reports whether want appears in got in order (other elements between).
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
