// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/projector"
)

// EventLog is what the router needs of the event log (*events.Log implements it).
type EventLog interface {
	Append(ctx context.Context, ev *events.Event, head events.Head) (events.Head, error)
	Load(ctx context.Context, aggregate string) ([]*events.Event, events.Head, error)
	Watch(ctx context.Context, aggregate string, from uint64, fn func(*events.Event) error) error
}

// View is what the router reads of the projected view (*projector.Reader implements it).
type View interface {
	Env(ctx context.Context, id string) (*projector.Env, error)
	Envs(ctx context.Context) ([]*projector.Env, error)
	EnvsByTenant(ctx context.Context, tenant string) ([]*projector.Env, error)
	Hosts(ctx context.Context) ([]*projector.Host, error)
	Freshness(ctx context.Context) (uint64, error)
}

// Frontend builds the MCP endpoint's handler over a router (package mcp provides one). The
// handler sees each call's Principal in its request context.
type Frontend func(r *Router) http.Handler

// Deps are what a router talks to.
type Deps struct {
	NC     *nats.Conn // host RPC
	Log    EventLog
	View   View
	Tokens *Tokens // API keys; may be nil only with Config.NoAuth
	MCP    Frontend
}

// Router is one stateless router replica.
type Router struct {
	cfg     Config
	nc      *nats.Conn
	log     EventLog
	view    View
	tokens  *Tokens
	logger  *slog.Logger
	metrics *Metrics
	owners  ownerCache
	calls   tenantCalls
	handler http.Handler
	// transfers carry file contents too large for one NATS message.
	transfers *hostrpc.Transfers
	// tenants holds the tenants' reservations (tenant limits).
	tenants *reservations
	// claims holds the tenants' idempotency keys.
	claims *claims

	mu      sync.Mutex
	pending map[string]int // host -> MiB this replica is placing right now (spreads bursts)
	addr    net.Addr
	ready   chan struct{}
}

// New builds a router; Run serves it.
func New(cfg Config, deps Deps) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.NC == nil || deps.Log == nil || deps.View == nil || deps.MCP == nil:
		return nil, errors.New("router: NC, Log, View and MCP are required")
	case deps.Tokens == nil && !cfg.NoAuth:
		return nil, errors.New("router: Tokens are required unless authentication is off")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	js, err := jetstream.New(deps.NC)
	if err != nil {
		return nil, fmt.Errorf("router: jetstream: %w", err)
	}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	metrics, err := newMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"router": cfg.ID}, reg))
	if err != nil {
		return nil, fmt.Errorf("router: metrics: %w", err)
	}
	r := &Router{
		cfg: cfg, nc: deps.NC, log: deps.Log, view: deps.View, tokens: deps.Tokens,
		logger:    logger.With("router", cfg.ID),
		metrics:   metrics,
		owners:    ownerCache{ttl: cfg.OwnerCacheTTL, m: map[string]ownerEntry{}},
		calls:     tenantCalls{max: cfg.MaxCallsPerTenant, n: map[string]int{}},
		pending:   map[string]int{},
		ready:     make(chan struct{}),
		transfers: hostrpc.NewTransfers(js),
		tenants:   &reservations{bucket: bucket{js: js, name: events.TenantsBucket}, log: deps.Log},
		claims:    &claims{bucket{js: js, name: events.IdempotencyBucket}},
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", r.checkOrigin(r.withCallLimits(r.authenticate(deps.MCP(r)))))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", r.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	r.handler = mux
	return r, nil
}

// Config is the router's configuration.
func (r *Router) Config() Config { return r.cfg }

// Logger is the router's logger.
func (r *Router) Logger() *slog.Logger { return r.logger }

// Metrics are the router's metrics (the MCP frontend records its tool calls into them).
func (r *Router) Metrics() *Metrics { return r.metrics }

// Handler serves /mcp, /healthz, /readyz and /metrics.
func (r *Router) Handler() http.Handler { return r.handler }

// Addr is the address Run listens on; it blocks until Run has bound it or ctx ends.
func (r *Router) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-r.ready:
		return r.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run serves HTTP on Config.Listen and ends stuck environments (see stuck.go) until ctx ends,
// then shuts down gracefully.
func (r *Router) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("router %s: listen: %w", r.cfg.ID, err)
	}
	r.addr = ln.Addr()
	close(r.ready)
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); r.runSweeper(sweepCtx) }()
	defer func() { stopSweep(); <-swept }()
	if r.cfg.NoAuth {
		r.logger.Warn("authentication is OFF: every caller is tenant "+DefaultTenant, "listen", r.addr.String())
	}
	srv := r.newServer()
	errc := make(chan error, 1)
	scheme := "http"
	if r.cfg.TLSCert != "" {
		scheme = "https"
		go func() { errc <- srv.ServeTLS(ln, r.cfg.TLSCert, r.cfg.TLSKey) }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	r.logger.Info("router serving", "mcp", scheme+"://"+r.addr.String()+"/mcp")
	select {
	case err := <-errc:
		return fmt.Errorf("router %s: serve: %w", r.cfg.ID, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("router %s: serve: %w", r.cfg.ID, err)
	}
	return nil
}

func (r *Router) serveReady(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if !r.nc.IsConnected() {
		http.Error(w, "not ready: NATS is not connected", http.StatusServiceUnavailable)
		return
	}
	seq, err := r.view.Freshness(ctx)
	if err != nil {
		http.Error(w, "not ready: view unreadable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ready (view at seq %d)\n", seq)
}

// authenticate resolves the bearer API key to a Principal, or answers 401.
func (r *Router) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.cfg.NoAuth {
			next.ServeHTTP(w, req.WithContext(WithPrincipal(req.Context(), Principal{Tenant: DefaultTenant, KeyID: "noauth"})))
			return
		}
		key, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || key == "" {
			r.unauthorized(w, authMissingKey, "missing API key: send the header Authorization: Bearer <key> (create one with `waggle token create --tenant T`)")
			return
		}
		tok, err := r.tokens.Authenticate(req.Context(), strings.TrimSpace(key))
		if errors.Is(err, ErrBadKey) {
			r.unauthorized(w, authBadKey, "invalid or revoked API key")
			return
		}
		if err != nil {
			id := NewRequestID()
			r.metrics.authFailed(authUnavailable)
			r.logger.Error("authenticate", "request", id, "err", err)
			http.Error(w, "cannot check the API key now (request id "+id+")", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, req.WithContext(WithPrincipal(req.Context(), Principal{Tenant: tok.Tenant, KeyID: tok.ID})))
	})
}

func (r *Router) unauthorized(w http.ResponseWriter, reason, msg string) {
	r.metrics.authFailed(reason)
	w.Header().Set("WWW-Authenticate", `Bearer realm="waggle"`)
	http.Error(w, msg, http.StatusUnauthorized)
}
