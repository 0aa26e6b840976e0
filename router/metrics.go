// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the request duration histogram.
var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics counts tool calls by tool and result, their latencies and the calls in flight, and
// writes them in the Prometheus text format. It is safe for concurrent use.
type Metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64 // (tool, result) -> count
	latency  map[string]*histogram
	inFlight int64
	http401  uint64
}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; one extra for +Inf
	sum    float64
	n      uint64
}

func newMetrics() *Metrics {
	return &Metrics{requests: map[[2]string]uint64{}, latency: map[string]*histogram{}}
}

// Begin records a call entering and returns the function that records its end with a result
// label ("ok", "error" or a UserError kind).
func (m *Metrics) Begin(tool string) func(result string) {
	start := time.Now()
	m.mu.Lock()
	m.inFlight++
	m.mu.Unlock()
	return func(result string) {
		d := time.Since(start).Seconds()
		m.mu.Lock()
		defer m.mu.Unlock()
		m.inFlight--
		m.requests[[2]string{tool, result}]++
		h := m.latency[tool]
		if h == nil {
			h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
			m.latency[tool] = h
		}
		i := sort.SearchFloat64s(latencyBuckets, d)
		h.counts[i]++
		h.sum += d
		h.n++
	}
}

func (m *Metrics) unauthorized() {
	m.mu.Lock()
	m.http401++
	m.mu.Unlock()
}

// WriteTo writes every metric in the Prometheus text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	b.WriteString("# HELP waggle_router_requests_total MCP tool calls by tool and result.\n")
	b.WriteString("# TYPE waggle_router_requests_total counter\n")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		fmt.Fprintf(&b, "waggle_router_requests_total{tool=%q,result=%q} %d\n", k[0], k[1], m.requests[k])
	}
	b.WriteString("# HELP waggle_router_request_duration_seconds MCP tool call latency.\n")
	b.WriteString("# TYPE waggle_router_request_duration_seconds histogram\n")
	tools := make([]string, 0, len(m.latency))
	for t := range m.latency {
		tools = append(tools, t)
	}
	sort.Strings(tools)
	for _, t := range tools {
		h := m.latency[t]
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(&b, "waggle_router_request_duration_seconds_bucket{tool=%q,le=%q} %d\n", t, formatFloat(le), cum)
		}
		cum += h.counts[len(latencyBuckets)]
		fmt.Fprintf(&b, "waggle_router_request_duration_seconds_bucket{tool=%q,le=\"+Inf\"} %d\n", t, cum)
		fmt.Fprintf(&b, "waggle_router_request_duration_seconds_sum{tool=%q} %s\n", t, formatFloat(h.sum))
		fmt.Fprintf(&b, "waggle_router_request_duration_seconds_count{tool=%q} %d\n", t, h.n)
	}
	b.WriteString("# HELP waggle_router_in_flight MCP tool calls being served.\n")
	b.WriteString("# TYPE waggle_router_in_flight gauge\n")
	fmt.Fprintf(&b, "waggle_router_in_flight %d\n", m.inFlight)
	b.WriteString("# HELP waggle_router_unauthorized_total HTTP requests refused for a missing or bad API key.\n")
	b.WriteString("# TYPE waggle_router_unauthorized_total counter\n")
	fmt.Fprintf(&b, "waggle_router_unauthorized_total %d\n", m.http401)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%g", f)
}
