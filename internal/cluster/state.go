// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// StateFile is the file in the cluster's directory that says where every process is, so that
// scripts, operators and `waggle cluster down` find them. A pid of 0 is a process that does
// not run.
const StateFile = "cluster.json"

// State is the content of StateFile.
type State struct {
	NATS       []NATSState      `json:"nats"`
	Routers    []RouterState    `json:"routers"`
	HostAgents []HostAgentState `json:"hostagents"`
	Projectors []ProjectorState `json:"projectors"`
	APIKey     string           `json:"api_key"`
	CredsDir   string           `json:"creds_dir"`

	// What `waggle cluster down` needs besides: the directory, the binaries and cache (to
	// look for VMs a host agent left), what the host agents do with VMs when stopped, and the
	// private network of isolated host agents.
	Dir      string   `json:"dir"`
	Waggle   string   `json:"waggle"`
	Init     string   `json:"init"`
	CacheDir string   `json:"cache_dir"`
	Drain    string   `json:"drain"`
	Network  *Network `json:"network,omitempty"`
}

// NATSState is one JetStream node.
type NATSState struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	PID  int    `json:"pid"`
	Log  string `json:"log"`
}

// RouterState is one router; URL is its MCP endpoint.
type RouterState struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	PID int    `json:"pid"`
	Log string `json:"log"`
}

// HostAgentState is one host agent; Netns is the network namespace an isolated one runs in.
type HostAgentState struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Gossip  string `json:"gossip"`
	Log     string `json:"log"`
	DataDir string `json:"data_dir"`
	Netns   string `json:"netns,omitempty"`
}

// ProjectorState is one projector replica.
type ProjectorState struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Log  string `json:"log"`
}

// ErrNoCluster means a directory holds no cluster.json.
var ErrNoCluster = errors.New("no cluster")

// ReadState reads dir's cluster.json.
func ReadState(dir string) (*State, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (no %s; start one with `waggle cluster up --dir %s`)", ErrNoCluster, dir, StateFile, dir)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// state is the cluster as cluster.json tells it.
func (c *Cluster) state() *State {
	st := &State{APIKey: c.key, CredsDir: c.credsDir(), Dir: c.dir, Waggle: c.cfg.Waggle, Init: c.cfg.Init,
		CacheDir: c.cfg.CacheDir, Drain: c.cfg.Drain, Network: c.net}
	for _, p := range c.procs {
		switch p.Role {
		case RoleNATS:
			st.NATS = append(st.NATS, NATSState{Name: p.Name, URL: p.Addr, PID: p.Pid(), Log: p.Log})
		case RoleRouter:
			st.Routers = append(st.Routers, RouterState{ID: p.Name, URL: p.Addr, PID: p.Pid(), Log: p.Log})
		case RoleHostAgent:
			st.HostAgents = append(st.HostAgents, HostAgentState{ID: p.Name, PID: p.Pid(), Gossip: p.Addr, Log: p.Log, DataDir: p.Dir, Netns: p.Netns})
		case RoleProjector:
			st.Projectors = append(st.Projectors, ProjectorState{Name: p.Name, PID: p.Pid(), Log: p.Log})
		}
	}
	return st
}

// save writes cluster.json (mode 0600: it holds the API key).
func (c *Cluster) save() error {
	raw, err := json.MarshalIndent(c.state(), "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(c.dir, StateFile), append(raw, '\n'), 0o600)
}

// procs rebuilds the processes cluster.json lists (their start arguments are not kept: a
// cluster read back can be stopped, not restarted).
func (st *State) procs() []*Proc {
	var out []*Proc
	add := func(name, role, addr, log, dir, netns string, pid int) {
		p := &Proc{Name: name, Role: role, Addr: addr, Log: log, Dir: dir, Netns: netns}
		p.attach(pid, st.Dir)
		out = append(out, p)
	}
	for _, n := range st.NATS {
		add(n.Name, RoleNATS, n.URL, n.Log, "", "", n.PID)
	}
	for _, p := range st.Projectors {
		add(p.Name, RoleProjector, "", p.Log, "", "", p.PID)
	}
	for _, h := range st.HostAgents {
		add(h.ID, RoleHostAgent, h.Gossip, h.Log, h.DataDir, h.Netns, h.PID)
	}
	for _, r := range st.Routers {
		add(r.ID, RoleRouter, r.URL, r.Log, "", "", r.PID)
	}
	return out
}
