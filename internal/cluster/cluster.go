// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package cluster runs a whole waggle cluster on one machine as separate OS processes (a
// JetStream cluster of `waggle nats` nodes, projectors, host agents and routers, each with its
// own address, credential, directory and log) and stops, kills, restarts and cuts off single
// processes of it: `waggle cluster up|down` and the failure tests use it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/membership"
	"github.com/waggle-dev/waggle/internal/progress"
	"github.com/waggle-dev/waggle/projector"
	"github.com/waggle-dev/waggle/router"
)

// Cluster is one cluster's processes and the admin's connection to its NATS.
type Cluster struct {
	cfg   Config
	dir   string
	procs []*Proc // in start order: NATS nodes, projectors, host agents, routers
	net   *Network
	key   string
	prog  *progress.Reporter

	mu    sync.Mutex // guards save and the admin connection
	admin *nats.Conn
	log   *events.Log
}

// New plans the cluster of cfg: every process's address, ports, arguments, directory and log.
// Start starts it.
func New(cfg Config) (*Cluster, error) {
	if cfg.CacheDir == "" {
		return nil, errors.New("cluster: CacheDir is required (the host agents share it)")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.Init == "" {
		cfg.Init = filepath.Join(filepath.Dir(cfg.Waggle), "waggle-init")
	}
	c := &Cluster{cfg: cfg, dir: dir, prog: cfg.Progress}
	base := net.ParseIP(cfg.IP).To4()
	addr := func(i int) string {
		ip := slices.Clone(base)
		ip[3] += byte(i)
		return ip.String()
	}
	ports := cfg.Ports
	if cfg.NetnsHosts > 0 {
		if c.net, err = newNetwork(dir); err != nil {
			return nil, err
		}
		addr = func(i int) string { return c.net.ip(int(base[3]) + i) }
		// The network is the cluster's alone: the default ports are free on it.
		for _, pp := range []struct {
			p   *int
			def int
		}{{&ports.NATS, DefaultPorts.NATS}, {&ports.Route, DefaultPorts.Route},
			{&ports.Gossip, DefaultPorts.Gossip}, {&ports.Router, DefaultPorts.Router}} {
			if *pp.p == 0 {
				*pp.p = pp.def
			}
		}
	}
	port := func(ip string, p int) (int, error) {
		if p != 0 {
			return p, nil
		}
		return freePort(ip)
	}

	var natsURLs, routes []string
	type node struct {
		name, ip      string
		client, route int
	}
	var nodes []node
	for i := range cfg.NATS {
		n := node{name: "nats" + strconv.Itoa(i+1), ip: addr(i)}
		if n.client, err = port(n.ip, ports.NATS); err != nil {
			return nil, err
		}
		if n.route, err = port(n.ip, ports.Route); err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		natsURLs = append(natsURLs, "nats://"+net.JoinHostPort(n.ip, strconv.Itoa(n.client)))
		routes = append(routes, "nats://"+net.JoinHostPort(n.ip, strconv.Itoa(n.route)))
	}
	urls := strings.Join(natsURLs, ",")
	for i, n := range nodes {
		args := []string{"nats", "--data-dir", c.procDir(n.name), "--creds-dir", c.credsDir(), "--server-name", n.name,
			"--listen", net.JoinHostPort(n.ip, strconv.Itoa(n.client))}
		if cfg.NATS > 1 {
			args = append(args, "--cluster-name", "waggle", "--cluster-listen", net.JoinHostPort(n.ip, strconv.Itoa(n.route)),
				"--routes", strings.Join(routes, ","), "--replicas", strconv.Itoa(min(cfg.NATS, 3)))
		}
		c.add(&Proc{Name: n.name, Role: RoleNATS, Args: args, Addr: natsURLs[i], ip: n.ip})
	}
	for i := range cfg.Projectors {
		name := "proj" + strconv.Itoa(i+1)
		c.add(&Proc{Name: name, Role: RoleProjector, Args: []string{"projector", "--name", name,
			"--nats-url", urls, "--nats-creds", c.credsFile(access.Role{Kind: access.Projector, ID: name})}})
	}
	var gossip []string
	for i := range cfg.HostAgents {
		ip := addr(cfg.NATS + i)
		p, err := port(ip, ports.Gossip)
		if err != nil {
			return nil, err
		}
		gossip = append(gossip, net.JoinHostPort(ip, strconv.Itoa(p)))
	}
	for i := range cfg.HostAgents {
		id := "host" + strconv.Itoa(i+1)
		others := slices.Delete(slices.Clone(gossip), i, i+1)
		args := []string{"hostagent", "--host-id", id, "--data-dir", c.procDir(id), "--cache-dir", cfg.CacheDir, "--init", cfg.Init,
			"--nats-url", urls, "--nats-creds", c.credsFile(access.Role{Kind: access.HostAgent, ID: id}),
			"--bind", gossip[i], "--join", strings.Join(others, ","), "--accel", cfg.Accel, "--drain", cfg.Drain}
		p := &Proc{Name: id, Role: RoleHostAgent, Args: append(args, cfg.HostAgentArgs...), Addr: gossip[i], ip: addr(cfg.NATS + i)}
		if i >= cfg.HostAgents-cfg.NetnsHosts {
			c.net.isolate(id, i+1, p.ip)
			p.Netns = c.net.Isolated[id].Netns
		}
		c.add(p)
	}
	for i := range cfg.Routers {
		id := "router" + strconv.Itoa(i+1)
		ip := addr(cfg.NATS + cfg.HostAgents + i)
		p, err := port(ip, ports.Router)
		if err != nil {
			return nil, err
		}
		listen := net.JoinHostPort(ip, strconv.Itoa(p))
		args := []string{"router", "--id", id, "--listen", listen, "--nats-url", urls, "--nats-creds", c.credsFile(routerRole)}
		c.add(&Proc{Name: id, Role: RoleRouter, Args: append(args, cfg.RouterArgs...), Addr: "http://" + listen + "/mcp", ip: ip})
	}
	return c, nil
}

// add appends a planned process, with its directory and log.
func (c *Cluster) add(p *Proc) {
	p.Dir, p.Log = c.procDir(p.Name), filepath.Join(c.dir, "logs", p.Name+".log")
	c.procs = append(c.procs, p)
}

func (c *Cluster) procDir(name string) string { return filepath.Join(c.dir, name) }
func (c *Cluster) credsDir() string           { return filepath.Join(c.dir, "creds") }

// CredsFile is the path of role's credential in the cluster's credentials directory.
func (c *Cluster) credsFile(r access.Role) string { return filepath.Join(c.credsDir(), r.CredsFile()) }

// CredsFile is the path of the credential of role kind (admin, operator, router, or a
// projector or host agent with its name).
func (c *Cluster) CredsFile(kind, id string) string {
	return c.credsFile(access.Role{Kind: kind, ID: id})
}

// roleNames name the roles in progress lines.
var roleNames = map[string]string{RoleNATS: "nats", RoleProjector: "projectors", RoleHostAgent: "host agents", RoleRouter: "routers"}

var (
	adminRole  = access.Role{Kind: access.Admin}
	routerRole = access.Role{Kind: access.Router}
)

// freePort is a TCP and UDP port nobody listens on at ip right now.
func freePort(ip string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p)))
		l.Close()
		if err == nil {
			u.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port free for both TCP and UDP on %s", ip)
}

// Up plans and starts the cluster of cfg; see Start.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Start starts every process in order and returns once the cluster is ready: the stream has
// its replicas and a leader, the projectors run, the view shows every host agent live and
// every router answers /readyz. A process that does not come up fails Start with a
// *ProcError (the end of its log included), and what was started is stopped.
func (c *Cluster) Start(ctx context.Context) (err error) {
	if st, err := ReadState(c.dir); err == nil {
		for _, p := range st.procs() {
			if p.Running() {
				return fmt.Errorf("a cluster runs in %s already (%s, pid %d): stop it first (waggle cluster down --dir %s)", c.dir, p.Name, p.Pid(), c.dir)
			}
		}
	}
	defer func() {
		if err != nil {
			c.prog.Printf("cluster", "stopping what was started")
			if derr := c.down(context.WithoutCancel(ctx)); derr != nil {
				c.prog.Printf("cluster", "stop: %v", derr)
			}
		}
	}()
	err = c.prog.Stage("cluster", "credentials", "", func() (string, error) {
		if err := c.makeCredentials(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s (admin, operator, router, %d projectors, %d host agents; gossip key)", c.credsDir(), c.cfg.Projectors, c.cfg.HostAgents), nil
	})
	if err != nil {
		return err
	}
	if c.net != nil {
		err = c.prog.Stage("cluster", "network", "", func() (string, error) {
			var outside []string
			for _, p := range c.procs {
				if p.ip != "" && p.Netns == "" {
					outside = append(outside, p.ip)
				}
			}
			if err := c.net.create(outside); err != nil {
				return "", err
			}
			var iso []string
			for h, i := range c.net.Isolated {
				iso = append(iso, h+" in "+i.Netns)
			}
			slices.Sort(iso)
			return fmt.Sprintf("bridge %s on %s.0/24; %s", c.net.Bridge, c.net.Prefix, strings.Join(iso, ", ")), nil
		})
		if err != nil {
			return err
		}
	}
	if err = c.prog.Stage("cluster", "nats", "", func() (string, error) { return c.startRole(ctx, RoleNATS) }); err != nil {
		return err
	}
	err = c.prog.Stage("cluster", "api key", "", func() (string, error) {
		key, _, err := router.EnsureFirstToken(ctx, c.log.JetStream(), c.dir)
		c.key = key
		return filepath.Join(c.dir, router.APIKeyFile), err
	})
	if err != nil {
		return err
	}
	for _, role := range []string{RoleProjector, RoleHostAgent, RoleRouter} {
		if err = c.prog.Stage("cluster", roleNames[role], "", func() (string, error) { return c.startRole(ctx, role) }); err != nil {
			return err
		}
	}
	return c.save()
}

// makeCredentials makes (or finds) the cluster's trust and every process's credential, and
// the host agents' gossip key, which they get in their environment.
func (c *Cluster) makeCredentials(ctx context.Context) error {
	if err := mkdirs(c.dir, filepath.Join(c.dir, "logs")); err != nil {
		return err
	}
	trust, _, err := access.OpenOrCreate(ctx, c.credsDir())
	if err != nil {
		return err
	}
	roles := []access.Role{adminRole, {Kind: access.Operator}, routerRole, {Kind: access.Projector, ID: access.DefaultProjector}}
	for _, p := range c.procs {
		switch p.Role {
		case RoleProjector:
			roles = append(roles, access.Role{Kind: access.Projector, ID: p.Name})
		case RoleHostAgent:
			roles = append(roles, access.Role{Kind: access.HostAgent, ID: p.Name})
		}
	}
	for _, r := range roles {
		if _, err := trust.EnsureCreds(r); err != nil {
			return err
		}
	}
	key, err := membership.LoadOrCreateKey(filepath.Join(c.dir, membership.KeyFileName))
	if err != nil {
		return err
	}
	for _, p := range c.procs {
		if p.Role == RoleHostAgent {
			p.Env = []string{"WAGGLE_GOSSIP_KEY=" + b64(key)}
		}
	}
	return nil
}

// startRole starts every process of role and waits until they are ready; it returns what
// a person wants to know about them.
func (c *Cluster) startRole(ctx context.Context, role string) (string, error) {
	procs := c.Procs(role)
	if err := c.startAndWait(ctx, procs...); err != nil {
		return "", err
	}
	var names []string
	for _, p := range procs {
		names = append(names, p.Name)
	}
	switch role {
	case RoleNATS:
		info, err := c.log.Stream().Info(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d nodes (%s), stream %s R%d, leader %s, %d events", len(procs), strings.Join(names, ", "),
			events.StreamName, info.Config.Replicas, info.Cluster.Leader, info.State.Msgs), nil
	case RoleRouter:
		var urls []string
		for _, p := range procs {
			urls = append(urls, p.Addr)
		}
		return fmt.Sprintf("%d ready: %s", len(procs), strings.Join(urls, " ")), nil
	}
	return fmt.Sprintf("%d ready (%s)", len(procs), strings.Join(names, ", ")), nil
}

// startAndWait starts procs (all of one role) and waits until each is ready for its role.
func (c *Cluster) startAndWait(ctx context.Context, procs ...*Proc) error {
	if len(procs) == 0 {
		return nil
	}
	role := procs[0].Role
	var since uint64
	if role == RoleHostAgent {
		var err error
		if since, err = c.log.LastSeq(ctx); err != nil {
			return err
		}
	}
	for _, p := range procs {
		if err := p.start(c.cfg.Waggle); err != nil {
			return err
		}
	}
	defer func() { _ = c.save() }()
	switch role {
	case RoleNATS:
		if err := c.waitReady(ctx, c.cfg.NATSTimeout, "ready with the event stream", procs, func(_ context.Context, p *Proc) (bool, error) {
			return p.logged("event stream ready"), nil
		}); err != nil {
			return err
		}
		if err := c.connectAdmin(ctx); err != nil {
			return err
		}
		return c.waitReady(ctx, c.cfg.NATSTimeout, "holding a current replica of the stream", procs, c.natsCurrent)
	case RoleProjector:
		return c.waitReady(ctx, c.cfg.RoleTimeout, "projecting", procs, func(_ context.Context, p *Proc) (bool, error) {
			return p.logged("projector: started"), nil
		})
	case RoleHostAgent:
		return c.waitReady(ctx, c.cfg.HostAgentTimeout, "joined and live in the view", procs, func(ctx context.Context, p *Proc) (bool, error) {
			return c.hostLive(ctx, p.Name, since)
		})
	case RoleRouter:
		return c.waitReady(ctx, c.cfg.RoleTimeout, "answering /readyz", procs, routerReady)
	}
	return fmt.Errorf("unknown role %q", role)
}

// waitReady polls ready for each of procs until all hold it. The first process that exits
// meanwhile, or still is not ready when timeout has passed, fails it with a *ProcError.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration, what string, procs []*Proc, ready func(context.Context, *Proc) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	pending := procs
	last := map[*Proc]error{}
	for {
		var still []*Proc
		for _, p := range pending {
			select {
			case <-p.exited():
				return &ProcError{Proc: p, Err: fmt.Errorf("exited (%w) before it was %s", p.exitErr(), what)}
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ok, err := ready(rctx, p)
			cancel()
			if !ok {
				last[p] = err
				still = append(still, p)
			}
		}
		if len(still) == 0 {
			return nil
		}
		pending = still
		if time.Now().After(deadline) {
			err := fmt.Errorf("not %s within %s", what, timeout)
			if last[still[0]] != nil {
				err = fmt.Errorf("%w (last: %w)", err, last[still[0]])
			}
			return &ProcError{Proc: still[0], Err: err}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be %s: %w", still[0].Name, what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// connectAdmin opens the admin's connection to every node and binds the event log.
func (c *Cluster) connectAdmin(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.admin != nil {
		return nil
	}
	opts, err := access.ConnectOptions(c.credsFile(adminRole))
	if err != nil {
		return err
	}
	nc, err := nats.Connect(c.NATSURLs(), append(opts, nats.Name("waggle cluster"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("connect to the cluster's NATS as admin: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, c.cfg.NATSTimeout)
	defer cancel()
	l, err := events.BindLog(bctx, nc)
	if err != nil {
		nc.Close()
		return err
	}
	c.admin, c.log = nc, l
	return nil
}

// natsCurrent reports whether node p is the stream's leader or a current replica, and the
// stream has its leader, every replica and the buckets beside it.
func (c *Cluster) natsCurrent(ctx context.Context, p *Proc) (bool, error) {
	info, err := c.log.Stream().Info(ctx)
	if err != nil {
		return false, err
	}
	cl := info.Cluster
	if cl == nil || c.cfg.NATS == 1 {
		return cl == nil || cl.Leader != "", nil
	}
	if cl.Leader == "" || len(cl.Replicas) != info.Config.Replicas-1 {
		return false, fmt.Errorf("stream leader %q, %d of %d replicas", cl.Leader, len(cl.Replicas)+1, info.Config.Replicas)
	}
	current := cl.Leader == p.Name
	for _, r := range cl.Replicas {
		if !r.Current || r.Offline {
			return false, fmt.Errorf("replica %s not current", r.Name)
		}
		current = current || r.Name == p.Name
	}
	if !current {
		return false, fmt.Errorf("%s holds no replica of the stream", p.Name)
	}
	js := c.log.JetStream()
	if _, err := js.ObjectStore(ctx, hostrpc.TransferBucket); err != nil {
		return false, err
	}
	for _, b := range []string{events.TokensBucket, events.TenantsBucket, events.IdempotencyBucket, events.ViewBucket} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			return false, fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return true, nil
}

// hostLive reports whether host joined after sequence since and the view shows it live.
func (c *Cluster) hostLive(ctx context.Context, host string, since uint64) (bool, error) {
	var joined uint64
	if err := c.log.Scan(ctx, events.HostSubject(host, events.HostJoined), since+1, func(ev *events.Event) error {
		joined = ev.Seq
		return nil
	}); err != nil || joined == 0 {
		return false, err
	}
	view, err := projector.NewReader(c.log.JetStream())
	if err != nil {
		return false, err
	}
	hosts, err := view.Hosts(ctx)
	if err != nil {
		return false, err
	}
	for _, h := range hosts {
		if h.ID == host {
			return h.State == projector.HostLive && h.Seq >= joined, fmt.Errorf("view: %s %s at seq %d (joined at %d)", host, h.State, h.Seq, joined)
		}
	}
	return false, fmt.Errorf("view: no host %s yet (joined at %d)", host, joined)
}

// routerReady reports whether the router answers /readyz with 200.
func routerReady(ctx context.Context, p *Proc) (bool, error) {
	url := strings.TrimSuffix(p.Addr, "/mcp") + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: %s", url, resp.Status)
}

// Procs are the processes of role, in order (all when role is "").
func (c *Cluster) Procs(role string) []*Proc {
	var out []*Proc
	for _, p := range c.procs {
		if role == "" || p.Role == role {
			out = append(out, p)
		}
	}
	return out
}

// Proc is the process named name, or nil.
func (c *Cluster) Proc(name string) *Proc {
	for _, p := range c.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Dir is the cluster's directory.
func (c *Cluster) Dir() string { return c.dir }

// APIKey is the API key of tenant default.
func (c *Cluster) APIKey() string { return c.key }

// NATSURLs are every node's client URL, comma separated.
func (c *Cluster) NATSURLs() string {
	var urls []string
	for _, p := range c.Procs(RoleNATS) {
		urls = append(urls, p.Addr)
	}
	return strings.Join(urls, ",")
}

// RouterURLs are the routers' MCP URLs.
func (c *Cluster) RouterURLs() []string {
	var urls []string
	for _, p := range c.Procs(RoleRouter) {
		urls = append(urls, p.Addr)
	}
	return urls
}

// Log is the event log on the admin's connection (nil before the NATS nodes are up).
func (c *Cluster) Log() *events.Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log
}

// Kill SIGKILLs the process named name and waits until it is gone.
func (c *Cluster) Kill(name string) error {
	p := c.Proc(name)
	if p == nil {
		return fmt.Errorf("no process %q", name)
	}
	err := p.Kill()
	return errors.Join(err, c.save())
}

// Restart starts the process named name again (it must have ended) and waits until it is
// ready for its role.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	p := c.Proc(name)
	switch {
	case p == nil:
		return fmt.Errorf("no process %q", name)
	case p.Running():
		return fmt.Errorf("%s runs (pid %d)", name, p.Pid())
	}
	return c.startAndWait(ctx, p)
}

// StreamLeader is the NATS node that leads the event stream.
func (c *Cluster) StreamLeader(ctx context.Context) (*Proc, error) {
	info, err := c.log.Stream().Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || c.Proc(info.Cluster.Leader) == nil {
		return nil, fmt.Errorf("stream leader %+v is none of the nodes", info.Cluster)
	}
	return c.Proc(info.Cluster.Leader), nil
}

// Cut cuts host agent host off the network (it must run in a namespace of its own).
func (c *Cluster) Cut(host string) error { return c.setLink(host, false) }

// Heal connects a host agent that Cut cut off again.
func (c *Cluster) Heal(host string) error { return c.setLink(host, true) }

func (c *Cluster) setLink(host string, up bool) error {
	if c.net == nil {
		return fmt.Errorf("host %s: %w: this cluster has no host agent in a namespace (waggle cluster up --netns-hosts N)", host, ErrNotIsolated)
	}
	return c.net.setLink(host, up)
}

// Open reads the cluster that runs in dir (its cluster.json), to stop it or cut its hosts off;
// prog gets Down's lines.
func Open(dir string, prog *progress.Reporter) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := ReadState(abs)
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	cfg.Dir, cfg.Waggle, cfg.Init, cfg.CacheDir, cfg.Drain, cfg.Progress = st.Dir, st.Waggle, st.Init, st.CacheDir, st.Drain, prog
	return &Cluster{cfg: cfg, dir: st.Dir, procs: st.procs(), net: st.Network, key: st.APIKey, prog: cfg.Progress}, nil
}

// Down stops the cluster cleanly, in order: routers (no new calls), host agents (they drain
// their environments per Config.Drain; with DrainDestroy a VM left behind is an error, and is
// stopped), the projectors once they have applied every event, the NATS nodes; then the
// network of isolated hosts is removed. Logs, data and credentials stay.
func (c *Cluster) Down(ctx context.Context) error {
	return c.down(ctx)
}

func (c *Cluster) down(ctx context.Context) error {
	var errs []error
	stop := func(role string, timeout time.Duration) (int, error) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var perr []error
		n := 0
		for _, p := range c.Procs(role) {
			if !p.Running() {
				continue
			}
			n++
			wg.Go(func() {
				if err := p.Stop(timeout); err != nil {
					mu.Lock()
					perr = append(perr, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		_ = c.save()
		return n, errors.Join(perr...)
	}
	short := c.cfg.StopTimeout / 4
	stage := func(name string, run func() (string, error)) {
		if err := c.prog.Stage("cluster", name, "", run); err != nil {
			errs = append(errs, err)
		}
	}
	stage("stop routers", func() (string, error) {
		n, err := stop(RoleRouter, short)
		return fmt.Sprintf("%d stopped", n), err
	})
	stage("stop host agents", func() (string, error) {
		n, err := stop(RoleHostAgent, c.cfg.StopTimeout)
		left, lerr := c.LeftoverVMs(ctx)
		switch {
		case lerr != nil:
			return "", errors.Join(err, lerr)
		case c.cfg.Drain == "keep":
			return fmt.Sprintf("%d stopped; %d VMs kept for the next start", n, len(left)), err
		case len(left) > 0:
			return "", errors.Join(err, stopVMs(ctx, left))
		}
		return fmt.Sprintf("%d stopped (drained: no VM left)", n), err
	})
	if running(c.Procs(RoleProjector)) > 0 {
		stage("stop projectors", func() (string, error) {
			lag := c.waitProjected(ctx, short)
			n, err := stop(RoleProjector, short)
			return fmt.Sprintf("%d stopped, %s", n, lag), err
		})
	}
	c.mu.Lock()
	if c.admin != nil {
		c.admin.Close()
		c.admin, c.log = nil, nil
	}
	c.mu.Unlock()
	stage("stop nats", func() (string, error) {
		n, err := stop(RoleNATS, short)
		return fmt.Sprintf("%d stopped", n), err
	})
	if c.net != nil {
		stage("remove network", func() (string, error) {
			c.net.remove()
			return c.net.Bridge + " and its namespaces removed", nil
		})
	}
	return errors.Join(errs...)
}

// running counts the procs that run.
func running(procs []*Proc) int {
	n := 0
	for _, p := range procs {
		if p.Running() {
			n++
		}
	}
	return n
}

// waitProjected waits (up to timeout) until the view has every event of the stream, so that
// the history ends in a consistent view; it says how that went.
func (c *Cluster) waitProjected(ctx context.Context, timeout time.Duration) string {
	if c.connectAdmin(ctx) != nil {
		return "view lag unknown (NATS unreachable)"
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := projector.ReadStatus(ctx, c.Log())
		if err == nil && st.Lag == 0 {
			return fmt.Sprintf("the view has every event (seq %d)", st.Applied)
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Sprintf("view lag unknown (%v)", err)
			}
			return fmt.Sprintf("the view lags %d events behind", st.Lag)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
