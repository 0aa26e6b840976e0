// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/internal/progress"
)

// Config says what cluster to run. DefaultConfig fills every field but Dir and Waggle.
type Config struct {
	// Dir holds everything: credentials, each process's directory and log, cluster.json.
	Dir string
	// Waggle is the waggle binary every process runs; Init the static waggle-init the host
	// agents boot guests with (default: beside Waggle).
	Waggle, Init string
	// CacheDir is the kernel and image cache the host agents share.
	CacheDir string

	// How many of each: a JetStream cluster needs 3 nodes for R3.
	NATS, Projectors, HostAgents, Routers int
	// NetnsHosts of the host agents (the last ones) run each in a network namespace of its
	// own, so that Cut can cut them off. The cluster then lives on a private /24 on a bridge
	// instead of 127.0.0.x (see Network); this needs root and iproute2.
	NetnsHosts int

	// IP is the first address of the loopback plan: the processes get it and the addresses
	// after it, one each (NATS nodes, host agents, routers).
	IP string
	// Ports every process of a kind listens on (each has an address of its own). Zero: a free
	// port, chosen at start (a cluster on its own network uses the defaults).
	Ports Ports

	// Drain is what host agents do with their VMs when stopped: hostagent.DrainDestroy (none
	// is left) or hostagent.DrainKeep (the next start adopts them).
	Drain string
	// Accel is the host agents' --accel.
	Accel string
	// HostAgentArgs and RouterArgs are more flags for each host agent and router.
	HostAgentArgs, RouterArgs []string

	// Timeouts of the stages of Up (each process must be ready within its stage's).
	NATSTimeout, HostAgentTimeout, RoleTimeout time.Duration
	// StopTimeout bounds a host agent's drain on Down (others get a fraction of it).
	StopTimeout time.Duration

	// Progress receives a line per stage with the time it took (nil: none).
	Progress *progress.Reporter
}

// Ports are the listening ports of the processes.
type Ports struct {
	NATS, Route, Gossip, Router int
}

// DefaultPorts are the ports of a cluster whose processes have fixed addresses.
var DefaultPorts = Ports{NATS: 4222, Route: 6222, Gossip: 7946, Router: 8080}

// DefaultIP is the first address of the default plan: clear of `waggle up`'s 127.0.0.1.
const DefaultIP = "127.0.0.11"

// DefaultConfig is three NATS nodes, two projectors, three host agents and two routers on
// 127.0.0.11 and the addresses after it, with the default ports.
func DefaultConfig() Config {
	return Config{
		NATS: 3, Projectors: 2, HostAgents: 3, Routers: 2,
		IP: DefaultIP, Ports: DefaultPorts,
		Drain: hostagent.DrainDestroy, Accel: "auto",
		NATSTimeout: 2 * time.Minute, HostAgentTimeout: 3 * time.Minute, RoleTimeout: time.Minute,
		StopTimeout: 2 * time.Minute,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Dir == "" || c.Waggle == "":
		return errors.New("cluster: Dir and Waggle are required")
	case c.NATS < 1 || c.Projectors < 1 || c.HostAgents < 1 || c.Routers < 1:
		return fmt.Errorf("cluster: need at least one of each process (nats %d, projectors %d, host agents %d, routers %d)",
			c.NATS, c.Projectors, c.HostAgents, c.Routers)
	case c.NetnsHosts < 0 || c.NetnsHosts > c.HostAgents:
		return fmt.Errorf("cluster: %d host agents in namespaces, but %d host agents", c.NetnsHosts, c.HostAgents)
	case c.Drain != hostagent.DrainDestroy && c.Drain != hostagent.DrainKeep:
		return fmt.Errorf("cluster: drain %q: use %s or %s", c.Drain, hostagent.DrainDestroy, hostagent.DrainKeep)
	}
	ip := net.ParseIP(c.IP).To4()
	if ip == nil || int(ip[3])+c.addresses() > 255 {
		return fmt.Errorf("cluster: IP %q: need an IPv4 address with %d more after it", c.IP, c.addresses()-1)
	}
	return nil
}

// addresses is how many addresses the plan needs: one per NATS node, host agent and router.
func (c *Config) addresses() int { return c.NATS + c.HostAgents + c.Routers }
