// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package membership runs a host agent's gossip membership (hashicorp/memberlist): who is in the
// cluster, with what static metadata, and which members were declared dead.
package membership

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is a member's static metadata, gossiped as JSON (at most memberlist.MetaMaxSize bytes).
type Meta struct {
	Address         string `json:"addr"`
	CPUs            int    `json:"cpus"`
	MemoryMiB       int    `json:"mem_mib"`
	MaxEnvironments int    `json:"max_envs"`
	// JoinSeq is the stream sequence of the member's host.joined event: its incarnation in the
	// event log, so a failure report names the incarnation that died.
	JoinSeq uint64 `json:"join_seq"`
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name string
	Addr string // host:port of its gossip endpoint
	Meta Meta
}

// Config configures one member. The timing fields default to a profile tuned for fast failure
// detection on a LAN (a crashed member is declared dead in about 1 s).
type Config struct {
	Name     string   // unique member name (the host id)
	BindAddr string   // host:port to listen on (UDP and TCP); port 0 picks a free one
	Join     []string // host:port of members to join; unreachable ones are retried
	// SecretKey (16, 24 or 32 bytes) encrypts gossip with AES-GCM; empty = plaintext.
	SecretKey []byte
	Meta      Meta

	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	RetransmitMult          int
	PushPullInterval        time.Duration
	// DeadNodeReclaimTime lets a dead member's name come back from a new address.
	DeadNodeReclaimTime time.Duration
	// RejoinInterval is how often Join is retried while no peer was reached.
	RejoinInterval time.Duration

	Logger *slog.Logger
}

// DefaultConfig is the tuned profile of shared/notes/nats-es.md §4 (0.7-1.1 s to declare a
// crashed member dead among 5-8 members on loopback).
func DefaultConfig() Config {
	return Config{
		BindAddr:                "127.0.0.1:0",
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 2,
		GossipInterval:          50 * time.Millisecond,
		RetransmitMult:          4,
		PushPullInterval:        2 * time.Second,
		DeadNodeReclaimTime:     time.Second,
		RejoinInterval:          time.Second,
		Logger:                  slog.Default(),
	}
}

// Membership is a running member. Members that depart are reported on Departed().
type Membership struct {
	ml     *memberlist.Memberlist
	addr   string
	metaMu sync.Mutex
	meta   []byte
	// alive mirrors memberlist's view from its callbacks: memberlist's own Node values change
	// under its lock after Members returns them.
	aliveMu sync.Mutex
	alive   map[string]Member
	logger  *slog.Logger
	gone    chan Member
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// goneBuffer bounds how many departure reports wait for the consumer of Departed().
const goneBuffer = 256

// Start joins the cluster (retrying unreachable peers in the background) and returns at once.
func Start(cfg Config) (*Membership, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, fmt.Errorf("membership: encode meta: %w", err)
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("membership: meta is %d bytes, limit %d", len(meta), memberlist.MetaMaxSize)
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: bind address %q: %w", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("membership: bind port %q: %w", portStr, err)
	}
	m := &Membership{meta: meta, logger: cfg.Logger.With("member", cfg.Name),
		gone: make(chan Member, goneBuffer), stop: make(chan struct{}), alive: map[string]Member{}}

	mc := memberlist.DefaultLocalConfig()
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = cfg.SuspicionMaxTimeoutMult
	mc.GossipInterval = cfg.GossipInterval
	mc.RetransmitMult = cfg.RetransmitMult
	mc.PushPullInterval = cfg.PushPullInterval
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = delegate{m}
	mc.Events = events{m}
	// memberlist's own lines ("[WARN] memberlist: ...") go to the debug level.
	mc.Logger = slog.NewLogLogger(m.logger.Handler(), slog.LevelDebug)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start %s on %s: %w", cfg.Name, cfg.BindAddr, err)
	}
	m.ml = ml
	m.addr = ml.LocalNode().Address()
	if cfg.Meta.Address == "" {
		cfg.Meta.Address = m.addr
		if err := m.SetMeta(cfg.Meta); err != nil {
			_ = ml.Shutdown()
			return nil, err
		}
	}
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			m.logger.Warn("membership: join failed, retrying in the background", "peers", cfg.Join, "err", err)
			m.wg.Add(1)
			go m.rejoin(cfg.Join, cfg.RejoinInterval)
		}
	}
	return m, nil
}

func (m *Membership) rejoin(peers []string, every time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if m.ml.NumMembers() > 1 {
				return
			}
			if _, err := m.ml.Join(peers); err == nil {
				m.logger.Info("membership: joined", "peers", peers)
				return
			}
		}
	}
}

// Addr is the host:port this member gossips on.
func (m *Membership) Addr() string { return m.addr }

// metaUpdateTimeout bounds the broadcast of changed metadata.
const metaUpdateTimeout = 2 * time.Second

// SetMeta changes this member's metadata and gossips the change (best effort: a broadcast
// that times out is logged, and push/pull carries the change later).
func (m *Membership) SetMeta(meta Meta) error {
	raw, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("membership: encode meta: %w", err)
	}
	if len(raw) > memberlist.MetaMaxSize {
		return fmt.Errorf("membership: meta is %d bytes, limit %d", len(raw), memberlist.MetaMaxSize)
	}
	m.metaMu.Lock()
	m.meta = raw
	m.metaMu.Unlock()
	if err := m.ml.UpdateNode(metaUpdateTimeout); err != nil {
		// Not delivered yet: the periodic push/pull spreads it anyway.
		m.logger.Warn("membership: meta update not broadcast in time", "err", err)
	}
	return nil
}

// Members are the members currently alive, this one included.
func (m *Membership) Members() []Member {
	m.aliveMu.Lock()
	defer m.aliveMu.Unlock()
	out := make([]Member, 0, len(m.alive))
	for _, mem := range m.alive {
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *Membership) setAlive(mem Member, alive bool) {
	m.aliveMu.Lock()
	defer m.aliveMu.Unlock()
	if alive {
		m.alive[mem.Name] = mem
	} else {
		delete(m.alive, mem.Name)
	}
}

// Departed reports each member that was declared dead or left. memberlist's leave callback
// does not tell the two apart, so a member that leaves gracefully must record that elsewhere
// first (a host agent appends host.left before it leaves).
func (m *Membership) Departed() <-chan Member { return m.gone }

// Leave announces a graceful departure and stops gossiping.
func (m *Membership) Leave(timeout time.Duration) error {
	err := m.ml.Leave(timeout)
	if serr := m.Shutdown(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossiping without announcing a departure (peers will declare it dead).
func (m *Membership) Shutdown() error {
	var err error
	m.once.Do(func() {
		close(m.stop)
		err = m.ml.Shutdown()
		m.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

func toMember(n *memberlist.Node) Member {
	mem := Member{Name: n.Name, Addr: n.Address()}
	if len(n.Meta) > 0 {
		// A peer's unreadable meta leaves Meta zero; liveness does not depend on it.
		_ = json.Unmarshal(n.Meta, &mem.Meta)
	}
	return mem
}

// delegate serves this member's metadata; it carries no user messages.
type delegate struct{ m *Membership }

func (d delegate) NodeMeta(limit int) []byte {
	d.m.metaMu.Lock()
	defer d.m.metaMu.Unlock()
	if len(d.m.meta) > limit {
		return nil
	}
	return d.m.meta
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events turns memberlist's synchronous callbacks into non-blocking reports.
type events struct{ m *Membership }

// The callbacks run under memberlist's lock: n is copied before it is kept.

func (e events) NotifyJoin(n *memberlist.Node) {
	e.m.setAlive(toMember(n), true)
	e.m.logger.Info("membership: member joined", "peer", n.Name, "addr", n.Address())
}

func (e events) NotifyLeave(n *memberlist.Node) {
	mem := toMember(n)
	e.m.setAlive(mem, false)
	e.m.logger.Info("membership: member departed", "peer", n.Name)
	select {
	case e.m.gone <- mem:
	default:
		e.m.logger.Error("membership: departure queue full, report dropped", "peer", n.Name)
	}
}

func (e events) NotifyUpdate(n *memberlist.Node) { e.m.setAlive(toMember(n), true) }
