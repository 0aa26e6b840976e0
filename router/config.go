// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// Config configures one router replica. DefaultConfig gives every field a working value.
type Config struct {
	// ID names this replica in logs and metrics.
	ID string
	// Listen is the HTTP listen address (host:port; port 0 picks a free one).
	Listen string
	// NoAuth serves every caller as tenant DefaultTenant without an API key. Refused unless
	// Listen is a loopback address.
	NoAuth bool
	// TLSCert and TLSKey, when set, are the PEM certificate and key the router serves HTTPS with.
	TLSCert, TLSKey string

	// HTTP limits. Each request gets its own deadlines (see CallTimeout): ReadTimeout bounds
	// reading one request, headers and body; WriteTimeout bounds answering a request that is
	// not a tool call (/healthz, /readyz, /metrics); a tool call may answer for CallTimeout.
	// IdleTimeout closes a keep-alive connection without requests.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxCallsPerTenant bounds the tool calls one tenant has in progress on this replica at once
	// (0 = unlimited); a call over it is refused as busy.
	MaxCallsPerTenant int
	// AllowedOrigins are the web origins (scheme://host[:port]) besides the router's own whose
	// pages may call /mcp; requests with any other Origin header are refused.
	AllowedOrigins []string

	// BootTimeout bounds the wait for a placed environment to start (or fail).
	BootTimeout time.Duration
	// DestroyTimeout bounds the wait for a destroy request to be carried out.
	DestroyTimeout time.Duration
	// StuckAfter is how long an environment may stay requested or placed (its router died, or
	// its host never took it) before a router ends it; it must exceed BootTimeout. Every
	// SweepInterval each replica looks for such environments (see stuck.go).
	StuckAfter, SweepInterval time.Duration
	// PlaceAttempts is how many hosts a create tries when hosts reject the placement.
	PlaceAttempts int
	// RPCMargin is added to an operation's own timeout when waiting for a host's answer.
	RPCMargin time.Duration
	// FileRPCTimeout bounds file operations on a host.
	FileRPCTimeout time.Duration
	// OwnerCacheTTL is how long an environment's (host, owner) pair is cached; both never change.
	OwnerCacheTTL time.Duration

	// Environment sizes: defaults when the caller gives none, and the allowed range.
	DefaultCPUs, MaxCPUs           int
	DefaultMemoryMiB, MinMemoryMiB int
	MaxMemoryMiB                   int
	// Idle timeout of an environment (timeout_minutes).
	DefaultTTL, MaxTTL time.Duration

	// Limits bound code, files, paths, packages and timeouts of the calls forwarded to hosts;
	// host agents check their requests against the same rules. A file larger than one NATS
	// message travels through the transfer object store (hostrpc.Transfers).
	Limits hostrpc.Limits

	// Per-tenant limits over the tenant's live environments (0 = unlimited).
	MaxEnvsPerTenant      int
	MaxMemoryMiBPerTenant int

	// Logger receives the router's logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics is where the router registers its metrics (labelled router=ID) and what its
	// /metrics serves, so that a process running several roles serves them all; nil means a
	// registry of the router's own.
	Metrics *prometheus.Registry
}

// DefaultTenant is the tenant of every caller when authentication is off.
const DefaultTenant = "default"

// DefaultConfig is a router listening on 127.0.0.1:8080 with authentication on.
func DefaultConfig() Config {
	return Config{
		ID:                    "router",
		Listen:                "127.0.0.1:8080",
		ReadTimeout:           2 * time.Minute,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		MaxCallsPerTenant:     32,
		BootTimeout:           120 * time.Second,
		DestroyTimeout:        30 * time.Second,
		StuckAfter:            3 * time.Minute,
		SweepInterval:         30 * time.Second,
		PlaceAttempts:         3,
		RPCMargin:             10 * time.Second,
		FileRPCTimeout:        60 * time.Second,
		OwnerCacheTTL:         5 * time.Minute,
		DefaultCPUs:           1,
		MaxCPUs:               4,
		DefaultMemoryMiB:      512,
		MinMemoryMiB:          128,
		MaxMemoryMiB:          4096,
		DefaultTTL:            30 * time.Minute,
		MaxTTL:                60 * time.Minute,
		Limits:                hostrpc.DefaultLimits(),
		MaxEnvsPerTenant:      20,
		MaxMemoryMiBPerTenant: 16384,
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return fmt.Errorf("router config: listen address is empty")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("router config: the TLS certificate and key go together")
	case c.NoAuth && !loopback(c.Listen):
		return fmt.Errorf("router config: --no-auth is only allowed on a loopback address, not %q", c.Listen)
	case c.BootTimeout <= 0 || c.DestroyTimeout <= 0 || c.FileRPCTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return fmt.Errorf("router config: timeouts must be positive")
	case c.StuckAfter <= c.BootTimeout || c.SweepInterval <= 0:
		return fmt.Errorf("router config: stuck after %s must exceed the boot timeout %s, and the sweep interval %s be positive",
			c.StuckAfter, c.BootTimeout, c.SweepInterval)
	case c.MaxCallsPerTenant < 0:
		return fmt.Errorf("router config: max calls per tenant %d < 0", c.MaxCallsPerTenant)
	case c.PlaceAttempts < 1:
		return fmt.Errorf("router config: place attempts %d < 1", c.PlaceAttempts)
	case c.DefaultCPUs < 1 || c.MaxCPUs < c.DefaultCPUs:
		return fmt.Errorf("router config: cpus: default %d, max %d", c.DefaultCPUs, c.MaxCPUs)
	case c.MinMemoryMiB < 1 || c.DefaultMemoryMiB < c.MinMemoryMiB || c.MaxMemoryMiB < c.DefaultMemoryMiB:
		return fmt.Errorf("router config: memory: min %d, default %d, max %d MiB", c.MinMemoryMiB, c.DefaultMemoryMiB, c.MaxMemoryMiB)
	case c.DefaultTTL < time.Minute || c.MaxTTL < c.DefaultTTL:
		return fmt.Errorf("router config: ttl: default %s, max %s", c.DefaultTTL, c.MaxTTL)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("router config: %w", err)
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return fmt.Errorf("router config: allowed origin %q is not scheme://host[:port], e.g. http://localhost:6274", o)
		}
	}
	return nil
}

// loopback reports whether a listen address binds only a loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
