// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/router"
)

// holdCalls starts n execute calls of code in env through cl, each in its own goroutine, and
// waits until the VMs of mm have n execs at the gate; the returned func waits for the calls to
// end and fails the test unless each succeeded.
func holdCalls(t *testing.T, cl *mcpClient, mm *memMachines, env string, n int) func() {
	t.Helper()
	errs := make(chan error, n)
	for range n {
		go func() {
			req := mcpgo.CallToolRequest{}
			req.Params.Name, req.Params.Arguments = toolExecute, envArgs(env, "code", "wait for the gate")
			res, err := cl.c.CallTool(cl.ctx, req)
			if err == nil && res.IsError {
				err = fmt.Errorf("tool error %v", res.Content)
			}
			errs <- err
		}()
	}
	want := mm.waiting.Load() + int32(n)
	deadline := time.Now().Add(10 * time.Second)
	for mm.waiting.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d execs at the gate, want %d", mm.waiting.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() {
		t.Helper()
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("held call: %v", err)
			}
		}
	}
}

// TestTenantCallLimit: a tenant with --max-calls-per-tenant calls in progress gets a busy tool
// error naming the limit for its next call, and other tenants are not affected; once its calls
// end, it is served again.
func TestTenantCallLimit(t *testing.T) {
	c := newCluster(t, 1, func(cfg *router.Config) { cfg.MaxCallsPerTenant = 2 })
	mm := startRealAgent(t, c, "real-1")
	acme, globex := c.client(c.key("acme"), ""), c.client(c.key("globex"), "")
	var a, g envResult
	acme.ok(toolCreate, map[string]any{"runtime": "python"}, &a)
	globex.ok(toolCreate, map[string]any{"runtime": "python"}, &g)

	wait := holdCalls(t, acme, mm, a.ID, 2)
	msg := acme.fails(toolExecute, envArgs(a.ID, "code", "print(6*7)"))
	for _, want := range []string{"tenant acme is busy", "2 calls in progress", "--max-calls-per-tenant", "retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("over the limit: %q, want %q", msg, want)
		}
	}
	if msg := acme.fails(toolList, nil); !strings.Contains(msg, "is busy") {
		t.Errorf("list over the limit: %q", msg)
	}
	var out execResult
	globex.ok(toolExecute, envArgs(g.ID, "code", "print(6*7)"), &out)
	if out.Stdout != "42\n" {
		t.Fatalf("other tenant: %+v", out)
	}
	mm.open()
	wait()
	acme.ok(toolExecute, envArgs(a.ID, "code", "print(6*7)"), &out)
}

// TestHostBusyIsToolError: an environment at its host's per-environment bound answers busy;
// the router turns that into a tool error naming the environment and saying the call did not
// run, and the environment's next call after that is served.
func TestHostBusyIsToolError(t *testing.T) {
	c := newCluster(t, 1, nil)
	mm := startRealAgent(t, c, "real-1", func(cfg *hostagent.Config) { cfg.MaxRPCsPerEnv = 1 })
	cl := c.client(c.key("acme"), "")
	var env, other envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &other)

	wait := holdCalls(t, cl, mm, env.ID, 1)
	msg := cl.fails(toolWrite, envArgs(env.ID, "path", "/home/sandbox/a", "content", "x"))
	for _, want := range []string{"environment " + env.ID + " is busy", "1 calls in progress", "write_file did not run", "safe to retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("busy environment: %q, want %q", msg, want)
		}
	}
	var out execResult
	cl.ok(toolExecute, envArgs(other.ID, "code", "print(6*7)"), &out) // another environment on the same host
	mm.open()
	wait()
	cl.ok(toolWrite, envArgs(env.ID, "path", "/home/sandbox/a", "content", "x"), nil)
}
