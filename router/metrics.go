// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets are the upper bounds (seconds) of the tool call and host RPC histograms: from
// a fast execute to a long package install.
var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Reasons of an authentication failure (label reason of waggle_router_auth_failures_total).
const (
	authMissingKey  = "missing_key"
	authBadKey      = "bad_key"
	authUnavailable = "unavailable" // the key store could not be read
)

// Metrics are the router's Prometheus metrics: tool calls by tool and result, their latency
// and the calls in flight, authentication failures, placement retries and host RPC latency.
type Metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	authFailures *prometheus.CounterVec
	retries      prometheus.Counter
	hostRPC      *prometheus.HistogramVec
}

// newMetrics registers the router's metrics with reg.
func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "waggle_router_requests_total",
			Help: "MCP tool calls by tool and result (ok, error, canceled or the kind of the caller's mistake).",
		}, []string{"tool", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "waggle_router_request_duration_seconds",
			Help:    "MCP tool call latency, from the call's arrival to its result.",
			Buckets: latencyBuckets,
		}, []string{"tool"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "waggle_router_in_flight",
			Help: "MCP tool calls being served.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "waggle_router_auth_failures_total",
			Help: "HTTP requests refused before any tool ran: API key missing, bad (unknown or revoked) or not checkable (key store unavailable).",
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_router_placement_retries_total",
			Help: "Creates placed again on another host after a host rejected the placement.",
		}),
		hostRPC: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "waggle_router_host_rpc_duration_seconds",
			Help:    "Round trip of requests to host agents over NATS, by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inFlight, m.authFailures, m.retries, m.hostRPC} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, reason := range []string{authMissingKey, authBadKey, authUnavailable} {
		m.authFailures.WithLabelValues(reason) // every reason shows, at 0 until it happens
	}
	return m, nil
}

// Begin records a call entering and returns the function that records its end with a result
// label ("ok", "error", "canceled" or a UserError kind).
func (m *Metrics) Begin(tool string) func(result string) {
	start := time.Now()
	m.inFlight.Inc()
	return func(result string) {
		m.inFlight.Dec()
		m.requests.WithLabelValues(tool, result).Inc()
		m.latency.WithLabelValues(tool).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) authFailed(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

func (m *Metrics) hostRPCDone(op string, start time.Time) {
	m.hostRPC.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
