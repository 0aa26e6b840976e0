// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
)

// metricsListenUsage documents --metrics-listen of the roles without an HTTP listener.
const metricsListenUsage = "serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; port 0 picks one); empty: none"

// addMetricsFlag defines --metrics-listen on f.
func addMetricsFlag(f *pflag.FlagSet, addr *string) {
	f.StringVar(addr, "metrics-listen", "", metricsListenUsage)
}

// newRegistry is the metrics registry of one waggle process: its roles register their
// metrics in it, beside the Go runtime's and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// metricsServer serves a registry at /metrics on its own listener.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenMetrics binds addr for the metrics of g; Serve serves them.
func listenMetrics(addr string, g prometheus.Gatherer) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return &metricsServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// URL is the address of the metrics.
func (m *metricsServer) URL() string { return "http://" + m.ln.Addr().String() + "/metrics" }

// Serve serves until ctx ends, then shuts down.
func (m *metricsServer) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(shutCtx); err != nil {
		_ = m.srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// serveMetricsWhile runs run while serving g at addr (when addr is not empty); the metrics stop
// when run returns, or run's context ends when the metrics server fails.
func serveMetricsWhile(ctx context.Context, addr string, g prometheus.Gatherer, logger *slog.Logger, run func(context.Context) error) error {
	if addr == "" {
		return run(ctx)
	}
	ms, err := listenMetrics(addr, g)
	if err != nil {
		return err
	}
	logger.Info("serving metrics", "url", ms.URL())
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	served := make(chan error, 1)
	go func() {
		err := ms.Serve(ctx)
		if err != nil {
			cancel(err)
		}
		served <- err
	}()
	err = run(ctx)
	cancel(nil)
	return errors.Join(err, <-served)
}
