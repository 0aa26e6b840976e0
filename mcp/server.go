// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/waggle-dev/waggle/router"
)

// Handler is the router's MCP endpoint: stateless Streamable HTTP, so that any router replica
// can serve any call. It has the type router.Frontend. A call that streams its output
// (withProgress) gets its response as an SSE stream: the notifications, then the result.
// There is no standalone GET stream (a stateless server has no session to send anything on
// later), so GET answers 405.
func Handler(r *router.Router) http.Handler {
	return server.NewStreamableHTTPServer(NewServer(r),
		server.WithStateLess(true),
		server.WithDisableStreaming(true),
		server.WithStreamableHTTPLogger(r.Logger()),
	)
}

// NewServer is the MCP server with waggle's tools bound to r.
func NewServer(r *router.Router) *server.MCPServer {
	s := server.NewMCPServer("waggle", buildVersion(),
		server.WithToolCapabilities(false),
		server.WithRecovery(),
		server.WithInstructions("waggle runs code in disposable microVM environments. "+
			"Call create_environment first, then execute, write_file, read_file, list_files and install_packages "+
			"with its environment_id, pause_environment to keep it for later (any call resumes it), and destroy_environment when done. For programs that run longer than a "+
			"tool call may last, use start_process and then read_process, wait_process or kill_process."),
	)
	h := &handlers{r: r}
	defs := tools(r.Config())
	for name, fn := range map[string]func(context.Context, router.Principal, any) (any, error){
		toolCreate: h.create, toolDestroy: h.destroy, toolList: h.list, toolGet: h.get,
		toolExecute: h.execute, toolInstall: h.install, toolWrite: h.write, toolRead: h.read,
		toolListFile: h.listFiles, toolStart: h.startProcess, toolReadProc: h.readProcess, toolWaitProc: h.waitProcess,
		toolKillProc: h.killProcess, toolPause: h.pause, toolResume: h.resume, toolFork: h.fork,
	} {
		s.AddTool(defs[name], h.wrap(name, fn))
	}
	return s
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

type handlers struct{ r *router.Router }

// wrap gives a tool call its request id and metrics, admits it among the tenant's calls in
// progress, and turns errors into results: a caller's mistake (or a busy tenant) is a tool
// error with its explanation; anything else is logged under the request id and returned as an
// internal error naming it.
func (h *handlers) wrap(tool string, fn func(context.Context, router.Principal, any) (any, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		id := router.NewRequestID()
		ctx = router.WithRequestID(ctx, id)
		if streamsOutput(tool) {
			var flush func()
			ctx, flush = withProgress(ctx, req, h.r.Logger())
			defer flush()
		}
		done := h.r.Metrics().Begin(tool)
		p, ok := router.PrincipalFrom(ctx)
		if !ok {
			done("error")
			return nil, fmt.Errorf("internal error (request id %s): no authenticated caller", id)
		}
		var out any
		end, err := h.r.BeginCall(p)
		if err == nil {
			out, err = fn(ctx, p, req.Params.Arguments)
			end()
		}
		var ae *argError
		switch {
		case err == nil:
			done("ok")
			return result(out)
		case errors.As(err, &ae):
			done(router.KindBadRequest)
			return mcpgo.NewToolResultError(ae.msg), nil
		}
		if ue, ok := router.AsUserError(err); ok {
			done(ue.Kind)
			return mcpgo.NewToolResultError(ue.Msg), nil
		}
		if ctx.Err() != nil {
			done("canceled")
			return nil, fmt.Errorf("%s canceled (request id %s): %w", tool, id, ctx.Err())
		}
		done("error")
		h.r.Logger().Error("tool failed", "tool", tool, "request", id, "principal", p.String(), "err", err)
		return nil, fmt.Errorf("internal error in %s (request id %s): %w", tool, id, err)
	}
}

// result carries out as structured content and the same JSON as text.
func result(out any) (*mcpgo.CallToolResult, error) {
	text, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return mcpgo.NewToolResultStructured(out, string(text)), nil
}

func (h *handlers) create(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeCreate(raw, router.Runtimes())
	if err != nil {
		return nil, err
	}
	return h.r.Create(ctx, p, router.CreateRequest{Runtime: a.Runtime, Name: a.Name,
		TTL: time.Duration(a.TimeoutMinutes) * time.Minute, CPUs: a.CPUs, MemoryMiB: a.MemoryMiB, OnTimeout: a.OnTimeout,
		IdempotencyKey: a.IdempotencyKey})
}

func (h *handlers) pause(ctx context.Context, p router.Principal, raw any) (any, error) {
	env, err := decodeEnvID(toolPause, raw)
	if err != nil {
		return nil, err
	}
	return h.r.Pause(ctx, p, env)
}

func (h *handlers) fork(ctx context.Context, p router.Principal, raw any) (any, error) {
	env, name, err := decodeFork(raw)
	if err != nil {
		return nil, err
	}
	return h.r.Fork(ctx, p, env, name)
}

func (h *handlers) resume(ctx context.Context, p router.Principal, raw any) (any, error) {
	env, err := decodeEnvID(toolResume, raw)
	if err != nil {
		return nil, err
	}
	return h.r.Resume(ctx, p, env)
}

func (h *handlers) destroy(ctx context.Context, p router.Principal, raw any) (any, error) {
	env, err := decodeEnvID(toolDestroy, raw)
	if err != nil {
		return nil, err
	}
	return h.r.Destroy(ctx, p, env)
}

// envList is the result of list_environments.
type envList struct {
	Environments []router.EnvInfo `json:"environments"`
	Count        int              `json:"count"`
}

func (h *handlers) list(ctx context.Context, p router.Principal, raw any) (any, error) {
	if err := decodeNone(toolList, raw); err != nil {
		return nil, err
	}
	envs, err := h.r.List(ctx, p)
	if err != nil {
		return nil, err
	}
	return envList{Environments: envs, Count: len(envs)}, nil
}

func (h *handlers) get(ctx context.Context, p router.Principal, raw any) (any, error) {
	env, err := decodeEnvID(toolGet, raw)
	if err != nil {
		return nil, err
	}
	return h.r.Get(ctx, p, env)
}

func (h *handlers) execute(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeExec(toolExecute, raw, router.Runtimes())
	if err != nil {
		return nil, err
	}
	return h.r.Exec(ctx, p, a.Env, router.ExecRequest{Code: a.Code, Language: a.Language,
		Timeout: time.Duration(a.TimeoutSeconds) * time.Second})
}

func (h *handlers) startProcess(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeExec(toolStart, raw, router.Runtimes())
	if err != nil {
		return nil, err
	}
	return h.r.StartProcess(ctx, p, a.Env, router.ExecRequest{Code: a.Code, Language: a.Language,
		Timeout: time.Duration(a.TimeoutSeconds) * time.Second})
}

func (h *handlers) readProcess(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeProcess(toolReadProc, raw, false)
	if err != nil {
		return nil, err
	}
	return h.r.ReadProcess(ctx, p, a.Env, a.Process)
}

func (h *handlers) waitProcess(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeProcess(toolWaitProc, raw, true)
	if err != nil {
		return nil, err
	}
	return h.r.WaitProcess(ctx, p, a.Env, a.Process, time.Duration(a.TimeoutSeconds)*time.Second)
}

func (h *handlers) killProcess(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeProcess(toolKillProc, raw, false)
	if err != nil {
		return nil, err
	}
	return h.r.KillProcess(ctx, p, a.Env, a.Process)
}

func (h *handlers) install(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeInstall(raw)
	if err != nil {
		return nil, err
	}
	return h.r.Install(ctx, p, a.Env, a.Packages)
}

// written is the result of write_file.
type written struct {
	Status       string `json:"status"`
	Path         string `json:"path"`
	BytesWritten int64  `json:"bytes_written"`
	SHA256       string `json:"sha256,omitempty"`
}

func (h *handlers) write(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeWrite(raw)
	if err != nil {
		return nil, err
	}
	content := []byte(a.Content)
	if a.Encoding == encBase64 {
		if content, err = base64.StdEncoding.DecodeString(a.Content); err != nil {
			return nil, argErrorf("content is not valid base64 (%v); send text with encoding utf-8 or fix the base64", err)
		}
	}
	res, err := h.r.WriteFile(ctx, p, a.Env, a.Path, content)
	if err != nil {
		return nil, err
	}
	return written{Status: "written", Path: orPath(res.Path, a.Path), BytesWritten: res.BytesWritten, SHA256: res.SHA256}, nil
}

// fileContent is the result of read_file.
type fileContent struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Encoding string `json:"encoding"`
	Content  string `json:"content"`
}

func (h *handlers) read(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeRead(raw)
	if err != nil {
		return nil, err
	}
	res, err := h.r.ReadFile(ctx, p, a.Env, a.Path)
	if err != nil {
		return nil, err
	}
	out := fileContent{Path: orPath(res.Path, a.Path), Size: res.Size, Encoding: encUTF8, Content: string(res.Content)}
	if a.Encoding == encBase64 || !utf8.Valid(res.Content) {
		out.Encoding, out.Content = encBase64, base64.StdEncoding.EncodeToString(res.Content)
	}
	return out, nil
}

func (h *handlers) listFiles(ctx context.Context, p router.Principal, raw any) (any, error) {
	a, err := decodeListFiles(raw)
	if err != nil {
		return nil, err
	}
	return h.r.ListFiles(ctx, p, a.Env, a.Path, a.Recursive)
}

func orPath(got, asked string) string {
	if got == "" {
		return asked
	}
	return got
}
