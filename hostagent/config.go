// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/membership"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// Drain modes: what a clean stop does with the environments still running.
const (
	DrainDestroy = "destroy" // destroy them (destroy_requested reason host_left, then destroyed)
	DrainKeep    = "keep"    // leave the VMs running; the next start adopts them
)

// Snapshot stores (Config.SnapshotStore): where a paused environment's snapshot lives.
const (
	SnapshotStoreLocal   = "local"   // this host's state directory only
	SnapshotStoreObjects = "objects" // also the object store, for a restore on another host
)

// Capacity is what a host offers to environments (warm pool VMs included).
type Capacity struct {
	MemoryMiB       int
	CPUs            int
	MaxEnvironments int
}

// Config configures one host agent.
type Config struct {
	HostID  string
	DataDir string // the agent's own state (warm pool claims)
	// Consumer is the name of the host's durable placement consumer (default
	// access.HostConsumer(HostID); with credentials, the secret name in them, see
	// events/access.Durable).
	Consumer string

	Capacity Capacity
	// DefaultResources apply to a requested environment that names none.
	DefaultResources events.Resources
	// DefaultTTL is the idle timeout of an environment whose request carries none.
	DefaultTTL time.Duration

	// Membership configures gossip; its Name is set to HostID and Meta is filled by the agent.
	Membership membership.Config

	// WarmPool is the number of pre-booted VMs kept per runtime in WarmRuntimes (0 = no pool).
	WarmPool     int
	WarmRuntimes []string

	Drain string // DrainDestroy or DrainKeep
	// SnapshotStore is where a paused environment's snapshot lives: SnapshotStoreLocal (only
	// in this host's state directory) or SnapshotStoreObjects (also in the JetStream object
	// store hostrpc.SnapshotBucket, so that another host can restore it when this one fails).
	SnapshotStore string

	BootTimeout time.Duration // one VM boot, pool or cold (waiting for a boot slot included)
	// MaxConcurrentBoots bounds the boots in progress at once; more placements wait their turn
	// (under TCG, boots that share too few CPUs stall and are retried by the VM layer).
	MaxConcurrentBoots int
	StopTimeout        time.Duration // one VM stop
	TouchInterval      time.Duration // at most one touched event per environment per interval
	TTLCheckInterval   time.Duration
	// RenewInterval is how often the agent renews the lease of every VM it holds. A VM's lease
	// is its environment's idle timeout (at least four intervals): a VM that no agent renews
	// for that long (its agent died for good) stops by itself; a restarted agent adopts the
	// VMs whose lease has not run out.
	RenewInterval time.Duration
	AckWait       time.Duration // placement consumer; in-progress acks keep long boots alive
	// MaxConcurrentRPCs bounds the RPCs in progress on this host, MaxRPCsPerEnv those
	// about one environment; a call over either is refused with hostrpc.CodeBusy.
	MaxConcurrentRPCs, MaxRPCsPerEnv int

	// Limits bound the requests of the RPC service: a request outside them is refused with the
	// code a router gives for it. Files larger than one NATS message travel through the
	// transfer object store (hostrpc.Transfers).
	Limits hostrpc.Limits

	// PackageSocket is the unix socket of this host's package proxy, which the VMs' shims relay
	// guests' connections to (vm.Config.PackageProxy names the same path); Packages configures
	// the proxy (its CacheDir defaults to packages/ in DataDir). Empty: the host runs none, and
	// install_packages cannot fetch.
	PackageSocket string
	Packages      pkgproxy.Config
	// AptKeys are OpenPGP public keys (armored or binary) that guests' apt trusts besides
	// Debian's, for an apt mirror signed with its own key; every apt install carries them.
	AptKeys []byte

	Logger *slog.Logger
	// Metrics receives the agent's metrics (waggle_hostagent_*, labelled host=HostID); nil
	// keeps them unexported.
	Metrics prometheus.Registerer
}

// DefaultConfig is a host offering what this machine has (HostCapacity); callers set HostID,
// DataDir and the membership address.
func DefaultConfig() Config {
	return Config{
		Capacity:           HostCapacity(),
		DefaultResources:   events.Resources{CPUs: 1, MemoryMiB: 512},
		DefaultTTL:         30 * time.Minute,
		Membership:         membership.DefaultConfig(),
		WarmRuntimes:       []string{"python", "node", "shell"},
		Drain:              DrainDestroy,
		SnapshotStore:      SnapshotStoreLocal,
		BootTimeout:        2 * time.Minute,
		MaxConcurrentBoots: max(1, runtime.NumCPU()),
		StopTimeout:        15 * time.Second,
		TouchInterval:      5 * time.Second,
		TTLCheckInterval:   time.Second,
		RenewInterval:      15 * time.Second,
		AckWait:            30 * time.Second,
		MaxConcurrentRPCs:  64,
		MaxRPCsPerEnv:      8,
		Limits:             hostrpc.DefaultLimits(),
		Packages:           pkgproxy.DefaultConfig(),
		Logger:             slog.Default(),
	}
}

// PackageSocket is where a host agent whose data directory is dataDir serves its package
// proxy.
func PackageSocket(dataDir string) string { return filepath.Join(dataDir, "packages.sock") }

func (c Config) validate() error {
	if err := events.ValidID(c.HostID); err != nil {
		return fmt.Errorf("host id: %w", err)
	}
	if c.DataDir == "" {
		return fmt.Errorf("data dir is required")
	}
	if c.Capacity.MemoryMiB <= 0 || c.Capacity.CPUs <= 0 || c.Capacity.MaxEnvironments <= 0 {
		return fmt.Errorf("capacity must be positive: %+v", c.Capacity)
	}
	if c.Drain != DrainDestroy && c.Drain != DrainKeep {
		return fmt.Errorf("drain must be %q or %q, not %q", DrainDestroy, DrainKeep, c.Drain)
	}
	if c.SnapshotStore != SnapshotStoreLocal && c.SnapshotStore != SnapshotStoreObjects {
		return fmt.Errorf("snapshot store must be %q or %q, not %q", SnapshotStoreLocal, SnapshotStoreObjects, c.SnapshotStore)
	}
	if c.MaxConcurrentRPCs < 1 || c.MaxRPCsPerEnv < 1 {
		return fmt.Errorf("max concurrent RPCs %d and per environment %d must be at least 1", c.MaxConcurrentRPCs, c.MaxRPCsPerEnv)
	}
	if c.RenewInterval <= 0 {
		return fmt.Errorf("lease renew interval %s must be positive", c.RenewInterval)
	}
	if c.MaxConcurrentBoots < 1 {
		return fmt.Errorf("max concurrent boots %d < 1", c.MaxConcurrentBoots)
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if c.WarmPool < 0 {
		return fmt.Errorf("warm pool size %d < 0", c.WarmPool)
	}
	if len(c.AptKeys) > wire.MaxAptKeys {
		return fmt.Errorf("apt keys: %d bytes, at most %d", len(c.AptKeys), wire.MaxAptKeys)
	}
	return nil
}
