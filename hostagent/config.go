// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/membership"
)

// Drain modes: what a clean stop does with the environments still running.
const (
	DrainDestroy = "destroy" // destroy them (destroy_requested reason host_left, then destroyed)
	DrainKeep    = "keep"    // leave the VMs running; the next start adopts them
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

	BootTimeout time.Duration // one VM boot, pool or cold (waiting for a boot slot included)
	// MaxConcurrentBoots bounds the boots in progress at once; more placements wait their turn
	// (under TCG, boots that share too few CPUs stall and are retried by the VM layer).
	MaxConcurrentBoots int
	StopTimeout        time.Duration // one VM stop
	TouchInterval      time.Duration // at most one touched event per environment per interval
	TTLCheckInterval   time.Duration
	AckWait            time.Duration // placement consumer; in-progress acks keep long boots alive
	MaxConcurrentRPCs  int

	// Request limits of the RPC service.
	MaxCodeBytes       int
	DefaultExecTimeout time.Duration
	MaxExecTimeout     time.Duration
	InstallTimeout     time.Duration
	MaxOutputBytes     int // per stream
	MaxListEntries     int
	// MaxFileBytes is the largest file write_file and read_file move; contents larger than one
	// NATS message travel through the transfer object store (hostrpc.Transfers).
	MaxFileBytes int

	Logger *slog.Logger
}

// DefaultConfig is a single small host; callers set HostID, DataDir and the membership address.
func DefaultConfig() Config {
	return Config{
		Capacity:           Capacity{MemoryMiB: 8192, CPUs: 8, MaxEnvironments: 32},
		DefaultResources:   events.Resources{CPUs: 1, MemoryMiB: 512},
		DefaultTTL:         30 * time.Minute,
		Membership:         membership.DefaultConfig(),
		WarmRuntimes:       []string{"python", "node", "shell"},
		Drain:              DrainDestroy,
		BootTimeout:        2 * time.Minute,
		MaxConcurrentBoots: max(1, runtime.NumCPU()),
		StopTimeout:        15 * time.Second,
		TouchInterval:      5 * time.Second,
		TTLCheckInterval:   time.Second,
		AckWait:            30 * time.Second,
		MaxConcurrentRPCs:  64,
		MaxCodeBytes:       512_000,
		DefaultExecTimeout: 30 * time.Second,
		MaxExecTimeout:     5 * time.Minute,
		InstallTimeout:     5 * time.Minute,
		MaxOutputBytes:     1 << 20,
		MaxListEntries:     10_000,
		MaxFileBytes:       32 << 20,
		Logger:             slog.Default(),
	}
}

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
	if c.MaxConcurrentBoots < 1 {
		return fmt.Errorf("max concurrent boots %d < 1", c.MaxConcurrentBoots)
	}
	if c.MaxFileBytes < 1 {
		return fmt.Errorf("max file bytes %d < 1", c.MaxFileBytes)
	}
	if c.WarmPool < 0 {
		return fmt.Errorf("warm pool size %d < 0", c.WarmPool)
	}
	return nil
}
