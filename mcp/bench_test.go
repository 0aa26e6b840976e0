// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/router"
)

func noTenantLimits(c *router.Config) { c.MaxEnvsPerTenant, c.MaxMemoryMiBPerTenant = 0, 0 }

// percentile is the p-th percentile (0-100) of ds, in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(int(float64(len(s))*p/100), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkCreateEnvironment measures create_environment through MCP over HTTP, from the call
// to the host's started event, with hosts that start at once (so this is the router's, the
// event log's and the host agent's share of a create, not a VM boot): the fake host of these
// tests, and the real host agent with in-memory VMs.
func BenchmarkCreateEnvironment(b *testing.B) {
	b.Run("host=fake", func(b *testing.B) {
		benchCreate(b, newCluster(b, 1, noTenantLimits, hostStarts))
	})
	b.Run("host=agent", func(b *testing.B) {
		c := newCluster(b, 1, noTenantLimits)
		startRealAgent(b, c, "real-1")
		benchCreate(b, c)
	})
}

func benchCreate(b *testing.B, c *cluster) {
	cl := c.client(c.key("bench"), "")
	var took []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		var env envResult
		cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
		took = append(took, time.Since(start))
		b.StopTimer()
		cl.ok(toolDestroy, map[string]any{argEnv: env.ID}, nil)
		b.StartTimer()
	}
	b.ReportMetric(percentile(took, 50), "p50-ms")
	b.ReportMetric(percentile(took, 99), "p99-ms")
}

// BenchmarkExecOverhead measures execute through MCP (HTTP, auth, ownership check, host RPC)
// against the same host RPC sent directly over NATS; the difference is the router's share.
func BenchmarkExecOverhead(b *testing.B) {
	c := newCluster(b, 1, noTenantLimits, hostStarts)
	cl := c.client(c.key("bench"), "")
	var env envResult
	cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
	body, err := json.Marshal(hostrpc.ExecRequest{Env: env.ID, Code: "print(6*7)", Language: "python", Timeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	nc, _ := c.Connect(b)
	var viaRouter, direct []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		cl.ok(toolExecute, map[string]any{argEnv: env.ID, "code": "print(6*7)"}, nil)
		viaRouter = append(viaRouter, time.Since(start))

		start = time.Now()
		msg := nats.NewMsg(hostrpc.Subject(env.Host, hostrpc.OpExec))
		msg.Data = body
		if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))
	}
	r, d := percentile(viaRouter, 50), percentile(direct, 50)
	b.ReportMetric(r, "router-p50-ms")
	b.ReportMetric(d, "direct-p50-ms")
	b.ReportMetric(r-d, "added-p50-ms")
}

// BenchmarkFileTransfer writes and reads back files through the router and the real host agent
// (in-memory VMs): 64 KiB inline in one NATS message, 12 MiB through the transfer object store.
func BenchmarkFileTransfer(b *testing.B) {
	for _, size := range []int{64 << 10, 12 << 20} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			c := newCluster(b, 1, noTenantLimits)
			startRealAgent(b, c, "real-1")
			cl := c.client(c.key("bench"), "")
			var env envResult
			cl.ok(toolCreate, map[string]any{"runtime": "python"}, &env)
			r, p := c.routers[0], router.Principal{Tenant: "bench", KeyID: "bench"}
			blob := make([]byte, size)
			b.SetBytes(int64(2 * size))
			for b.Loop() {
				if _, err := r.WriteFile(c.ctx, p, env.ID, "/home/sandbox/f.bin", blob); err != nil {
					b.Fatal(err)
				}
				if _, err := r.ReadFile(c.ctx, p, env.ID, "/home/sandbox/f.bin"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
