// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/membership"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
)

// Agent is one host agent. Create it with New and run it with Run.
type Agent struct {
	cfg       Config
	log       EventLog
	nc        *nats.Conn
	machines  Machines
	transfers *hostrpc.Transfers // file contents too large for one message
	snapshots *hostrpc.Snapshots // paused environments' snapshots, with SnapshotStoreObjects
	procs     *processTable      // background processes of the environments
	packages  *pkgproxy.Proxy    // nil without Config.PackageSocket
	logger    *slog.Logger
	metrics   *metrics
	principal string // host:<id>, the principal of the agent's own events

	mu       sync.Mutex
	envs     map[string]*envEntry
	used     events.Resources // reserved by environments and pool VMs
	count    int              // environments and pool VMs holding a reservation
	draining bool

	pool     *warmPool
	boots    chan struct{} // one token per boot in progress
	stopping chan struct{} // closed when Run starts to stop: queued boots give up

	members *membership.Membership // set by Run, guarded by mu
	joinSeq uint64                 // this incarnation's host.joined, guarded by mu
	ready   chan struct{}

	tasks    sync.WaitGroup // background work started by Run
	handlers sync.WaitGroup // placement deliveries in progress
}

// envEntry is one environment this host holds or is deciding about.
type envEntry struct {
	id string
	// mu serialises the lifecycle steps and appends of this aggregate (one in-flight append
	// per aggregate); exec and file calls run without it.
	mu  sync.Mutex
	agg aggregate

	// Guarded by Agent.mu:
	machine  Machine
	serving  bool   // running: exec and file calls allowed
	runtime  string // from the request
	res      events.Resources
	reserved bool
	calls    int           // RPC calls since the last touched event
	active   time.Time     // last activity (RPC call or event)
	ttl      time.Duration // idle timeout
}

// New checks the config and builds an agent; nothing runs until Run.
func New(cfg Config, log EventLog, nc *nats.Conn, machines Machines) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	if log == nil || nc == nil || machines == nil {
		return nil, errors.New("hostagent: event log, NATS connection and machines are required")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = access.HostConsumer(cfg.HostID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{
		cfg:       cfg,
		log:       log,
		nc:        nc,
		machines:  machines,
		transfers: hostrpc.NewTransfers(log.JetStream()),
		snapshots: hostrpc.NewSnapshots(log.JetStream()),
		logger:    cfg.Logger.With("host", cfg.HostID),
		principal: "host:" + cfg.HostID,
		envs:      map[string]*envEntry{},
		procs:     newProcessTable(cfg.Limits.MaxProcesses),
		ready:     make(chan struct{}),
		boots:     make(chan struct{}, cfg.MaxConcurrentBoots),
		stopping:  make(chan struct{}),
	}
	a.pool = newWarmPool(a)
	var reg prometheus.Registerer
	if cfg.Metrics != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"host": cfg.HostID}, cfg.Metrics)
	}
	var err error
	if a.metrics, err = newMetrics(reg, a); err != nil {
		return nil, fmt.Errorf("hostagent: metrics: %w", err)
	}
	if cfg.PackageSocket != "" {
		pcfg := cfg.Packages
		if pcfg.CacheDir == "" {
			pcfg.CacheDir = filepath.Join(cfg.DataDir, "packages")
		}
		pcfg.Logger = a.logger.With("component", "pkgproxy")
		p, err := pkgproxy.New(pcfg)
		if err != nil {
			return nil, fmt.Errorf("hostagent: %w", err)
		}
		a.packages = p
	}
	return a, nil
}

// lockEntry returns the locked entry of env, creating it if needed. The caller unlocks e.mu
// and calls release when done.
func (a *Agent) lockEntry(env string) *envEntry {
	for {
		a.mu.Lock()
		e := a.envs[env]
		if e == nil {
			e = &envEntry{id: env, agg: aggregate{host: a.cfg.HostID, env: env}}
			a.envs[env] = e
		}
		a.mu.Unlock()
		e.mu.Lock()
		a.mu.Lock()
		current := a.envs[env] == e
		a.mu.Unlock()
		if current {
			return e
		}
		e.mu.Unlock() // forgotten while we waited: start over with the current entry
	}
}

// unlockEntry unlocks e and forgets it when it holds nothing (no VM, no reservation).
func (a *Agent) unlockEntry(e *envEntry) {
	a.mu.Lock()
	if e.machine == nil && !e.reserved {
		delete(a.envs, e.id)
	}
	a.mu.Unlock()
	e.mu.Unlock()
}

// reserve takes res from the free capacity for an environment, or says why it cannot.
func (a *Agent) reserve(e *envEntry, res events.Resources) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining {
		return fmt.Sprintf("host %s is draining", a.cfg.HostID)
	}
	if reason := a.fitsLocked(res); reason != "" {
		return reason
	}
	a.addLocked(res, 1)
	e.res, e.reserved = res, true
	return ""
}

// fitsLocked says why res does not fit into the free capacity ("" when it fits).
func (a *Agent) fitsLocked(res events.Resources) string {
	c := a.cfg.Capacity
	switch {
	case a.count+1 > c.MaxEnvironments:
		return fmt.Sprintf("no capacity on host %s: out of environments: %d of %d in use", a.cfg.HostID, a.count, c.MaxEnvironments)
	case a.used.MemoryMiB+res.MemoryMiB > c.MemoryMiB:
		return fmt.Sprintf("no capacity on host %s: out of memory: %d MiB requested, %d of %d MiB free",
			a.cfg.HostID, res.MemoryMiB, c.MemoryMiB-a.used.MemoryMiB, c.MemoryMiB)
	case a.used.CPUs+res.CPUs > c.CPUs:
		return fmt.Sprintf("no capacity on host %s: out of cpus: %d requested, %d of %d free",
			a.cfg.HostID, res.CPUs, c.CPUs-a.used.CPUs, c.CPUs)
	}
	return ""
}

func (a *Agent) addLocked(res events.Resources, n int) {
	a.used.CPUs += n * res.CPUs
	a.used.MemoryMiB += n * res.MemoryMiB
	a.count += n
}

// releaseLocked returns e's reservation.
func (a *Agent) releaseLocked(e *envEntry) {
	if e.reserved {
		a.addLocked(e.res, -1)
		e.reserved = false
	}
}

// setMachine records e's VM (nil once it is stopped), releasing the reservation with the VM.
// The caller holds e.mu.
func (a *Agent) setMachine(e *envEntry, m Machine) {
	ttl := a.ttl(e.agg.Env)
	a.mu.Lock()
	defer a.mu.Unlock()
	e.machine, e.ttl, e.runtime = m, ttl, e.agg.Runtime
	if m == nil {
		a.releaseLocked(e)
	}
	e.serving = m != nil && e.agg.State == events.StateRunning
}

// serveEarly lets e serve calls while its started event is being appended. The caller holds
// e.mu and calls updateServing once the append returned.
func (a *Agent) serveEarly(e *envEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.serving = e.machine != nil
}

// updateServing re-derives whether e serves calls after its state changed. The caller holds e.mu.
func (a *Agent) updateServing(e *envEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.serving = e.machine != nil && e.agg.State == events.StateRunning
}

// resources is what an environment reserves: what it asked for, with defaults for unset fields.
func (a *Agent) resources(env events.Env) events.Resources {
	res := env.Resources
	if res.CPUs <= 0 {
		res.CPUs = a.cfg.DefaultResources.CPUs
	}
	if res.MemoryMiB <= 0 {
		res.MemoryMiB = a.cfg.DefaultResources.MemoryMiB
	}
	if res.DiskMiB <= 0 {
		res.DiskMiB = a.cfg.DefaultResources.DiskMiB
	}
	return res
}

// Usage reports the reserved resources and the number of VMs (environments and pool).
func (a *Agent) Usage() (events.Resources, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used, a.count
}

// stopMachine stops m, bounded by the stop timeout.
func (a *Agent) stopMachine(ctx context.Context, m Machine) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StopTimeout)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		return fmt.Errorf("stop VM %s: %w", m.ID(), err)
	}
	return nil
}

// goTask runs fn as a task that Run waits for before it returns.
func (a *Agent) goTask(fn func()) {
	a.tasks.Add(1)
	go func() {
		defer a.tasks.Done()
		fn()
	}()
}
