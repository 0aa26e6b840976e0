// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// bootBuckets are the upper bounds (seconds) of the boot latency histogram: a snapshot restore
// takes a fraction of a second, a cold boot under TCG a few seconds, a stalled one up to the
// boot timeout.
var bootBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120}

// rpcBuckets are the upper bounds (seconds) of the RPC and guest exec histograms.
var rpcBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Boot purposes (label purpose): a VM for a placed environment, or one for the warm pool.
const (
	bootEnvironment = "environment"
	bootPool        = "pool"
)

// Placement results (label result of waggle_hostagent_placements_total).
const (
	placeStartedCold = "started"
	placeStartedWarm = "started_warm"
	placeRejected    = "rejected"
	placeFailed      = "failed"
)

// VM states (label state of waggle_hostagent_vms).
const (
	vmBooting     = "booting"     // capacity reserved for an environment, its VM not up yet
	vmRunning     = "running"     // an environment's VM serving calls
	vmNotServing  = "not_serving" // an environment's VM that is starting to serve or being stopped
	vmWarm        = "warm"        // a ready warm pool VM
	vmWarmBooting = "warm_booting"
)

// metrics are a host agent's metrics (waggle_hostagent_*): boots, placements, RPC latency and
// queue, and, read from the agent on each scrape, VMs by state, capacity and the warm pool.
type metrics struct {
	boots       *prometheus.CounterVec
	bootLatency *prometheus.HistogramVec
	bootsQueued prometheus.Gauge
	placements  *prometheus.CounterVec
	rpcs        *prometheus.CounterVec
	rpcLatency  *prometheus.HistogramVec
	rpcInFlight prometheus.Gauge
	rpcRefused  prometheus.Counter
	guestExec   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, a *Agent) (*metrics, error) {
	m := &metrics{
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "waggle_hostagent_boots_total",
			Help: "VM boots by purpose (environment or pool) and result (ok or failed).",
		}, []string{"purpose", "result"}),
		bootLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "waggle_hostagent_boot_duration_seconds",
			Help:    "Time from starting a VM to its guest accepting commands, by purpose; failed boots included.",
			Buckets: bootBuckets,
		}, []string{"purpose"}),
		bootsQueued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "waggle_hostagent_boots_queued",
			Help: "Boots waiting for a boot slot (see --max-concurrent-boots).",
		}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "waggle_hostagent_placements_total",
			Help: "Placements handled, by result: started (cold boot), started_warm (a warm pool VM), rejected (no room) or failed.",
		}, []string{"result"}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "waggle_hostagent_rpc_requests_total",
			Help: "Exec, file and process requests answered, by operation and code (ok or the error code).",
		}, []string{"op", "code"}),
		rpcLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "waggle_hostagent_rpc_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by operation (exec is the execute tool's host part).",
			Buckets: rpcBuckets,
		}, []string{"op"}),
		rpcInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "waggle_hostagent_rpc_in_flight",
			Help: "Requests being served; at waggle_hostagent_rpc_max_in_flight (or the limit per environment) further ones are refused as busy.",
		}),
		rpcRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_hostagent_rpc_refused_total",
			Help: "Requests refused as busy: the host had waggle_hostagent_rpc_max_in_flight in progress, or their environment its limit.",
		}),
		guestExec: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "waggle_hostagent_guest_exec_duration_seconds",
			Help:    "Time of a command in the guest as the host sees it: from opening its SSH session to its exit.",
			Buckets: rpcBuckets,
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.boots, m.bootLatency, m.bootsQueued, m.placements, m.rpcs, m.rpcLatency,
		m.rpcInFlight, m.rpcRefused, m.guestExec, newStateCollector(a)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{bootEnvironment, bootPool} {
		for _, r := range []string{"ok", "failed"} {
			m.boots.WithLabelValues(p, r)
		}
	}
	for _, r := range []string{placeStartedCold, placeStartedWarm, placeRejected, placeFailed} {
		m.placements.WithLabelValues(r)
	}
	return m, nil
}

// booted records one boot of spec that began at start.
func (m *metrics) booted(spec LaunchSpec, start time.Time, err error) {
	purpose, result := bootEnvironment, "ok"
	if strings.HasPrefix(spec.ID, warmIDPrefix) {
		purpose = bootPool
	}
	if err != nil {
		result = "failed"
	}
	m.boots.WithLabelValues(purpose, result).Inc()
	m.bootLatency.WithLabelValues(purpose).Observe(time.Since(start).Seconds())
}

// answered records the answer to one RPC call.
func (m *metrics) answered(c *rpcCall, err error) {
	code := "ok"
	if err != nil {
		code = hostrpcCode(err)
	}
	m.rpcs.WithLabelValues(c.op, code).Inc()
	m.rpcLatency.WithLabelValues(c.op).Observe(time.Since(c.arrived).Seconds())
}

// hostrpcCode is the error code an RPC error is answered with.
func hostrpcCode(err error) string {
	var re *hostrpc.Error
	if errors.As(err, &re) {
		return re.Code
	}
	return hostrpc.CodeInternal
}

// stateCollector reads the agent's VMs, capacity and warm pool on each scrape.
type stateCollector struct {
	a                                                *Agent
	vms, capacity, used, free, poolReady, poolTarget *prometheus.Desc
	rpcMax, bootSlots, bootsInProgress, environments *prometheus.Desc
}

func newStateCollector(a *Agent) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("waggle_hostagent_"+name, help, labels, nil)
	}
	return &stateCollector{
		a:               a,
		vms:             d("vms", "VMs on this host by state: booting, running, not_serving (starting to serve or stopping), warm and warm_booting (the pool).", "state"),
		environments:    d("environments", "Environments holding a reservation on this host (their VMs booting, running or stopping)."),
		capacity:        d("capacity", "What this host offers, by resource: memory_bytes, cpus, environments (VMs, the pool's included).", "resource"),
		used:            d("capacity_used", "Capacity reserved by environments and pool VMs, by resource.", "resource"),
		free:            d("capacity_free", "Capacity still free, by resource; a placement that does not fit is rejected.", "resource"),
		poolReady:       d("warm_pool_ready", "Ready warm pool VMs, by runtime.", "runtime"),
		poolTarget:      d("warm_pool_target", "Warm pool VMs kept per runtime (--warm-pool)."),
		rpcMax:          d("rpc_max_in_flight", "Requests served at once before further ones are refused as busy."),
		bootSlots:       d("boot_slots", "Boots that may run at once (--max-concurrent-boots)."),
		bootsInProgress: d("boots_in_progress", "Boots holding a boot slot now."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.vms, c.environments, c.capacity, c.used, c.free, c.poolReady, c.poolTarget,
		c.rpcMax, c.bootSlots, c.bootsInProgress} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	a := c.a
	cfg := a.cfg
	a.mu.Lock()
	states := map[string]int{vmBooting: 0, vmRunning: 0, vmNotServing: 0, vmWarm: 0, vmWarmBooting: a.pool.booting}
	envs := 0
	for _, e := range a.envs {
		switch {
		case e.machine != nil && e.serving:
			states[vmRunning]++
		case e.machine != nil:
			states[vmNotServing]++
		case e.reserved:
			states[vmBooting]++
		}
		if e.reserved {
			envs++
		}
	}
	ready := map[string]int{}
	for _, rt := range cfg.WarmRuntimes {
		ready[rt] = 0
	}
	for rt, vms := range a.pool.ready {
		ready[rt] = len(vms)
		states[vmWarm] += len(vms)
	}
	used, count := a.used, a.count
	a.mu.Unlock()

	for state, n := range states {
		gauge(c.vms, n, state)
	}
	gauge(c.environments, envs)
	for _, r := range []struct {
		name        string
		total, used int
	}{
		{"memory_bytes", cfg.Capacity.MemoryMiB << 20, used.MemoryMiB << 20},
		{"cpus", cfg.Capacity.CPUs, used.CPUs},
		{"environments", cfg.Capacity.MaxEnvironments, count},
	} {
		gauge(c.capacity, r.total, r.name)
		gauge(c.used, r.used, r.name)
		gauge(c.free, max(r.total-r.used, 0), r.name)
	}
	for rt, n := range ready {
		gauge(c.poolReady, n, rt)
	}
	gauge(c.poolTarget, cfg.WarmPool)
	gauge(c.rpcMax, cfg.MaxConcurrentRPCs)
	gauge(c.bootSlots, cap(a.boots))
	gauge(c.bootsInProgress, len(a.boots))
}
