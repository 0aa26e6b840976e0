// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/hostagent/membership"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
	"github.com/waggle-dev/waggle/images"
	"github.com/waggle-dev/waggle/internal/progress"
	"github.com/waggle-dev/waggle/mcp"
	"github.com/waggle-dev/waggle/projector"
	"github.com/waggle-dev/waggle/router"
)

// upOptions are the settings of `waggle up`.
type upOptions struct {
	dataDir, listen, natsListen, gossipListen string
	metricsListen                             string
	hosts, routers, maxFileBytes              int
	noAuth                                    bool
	host                                      hostAgentOptions
	agent                                     hostagent.Config
	router                                    router.Config
}

func newUpCmd() *cobra.Command {
	o := upOptions{agent: hostagent.DefaultConfig(), router: router.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole waggle in this process: JetStream, projector, host agents and MCP routers",
		Long: "Run an embedded JetStream server, the projector, --hosts host agents and --routers MCP\n" +
			"routers in one process. Guest images are built on first use. Prints each MCP URL and the\n" +
			"API key; Ctrl-C stops everything and leaves no VM behind. Restarting with the same data\n" +
			"dir keeps the event history and the keys.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			shareCapacity(cmd.Flags(), &o.agent.Capacity, o.hosts)
			return runUp(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir, "data directory: event store, host state, API key")
	f.StringVar(&o.host.cacheDir, "cache-dir", "", "kernel and image cache (default: cache/ in --data-dir)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the first router; further routers take the next ports")
	f.StringVar(&o.natsListen, "nats-listen", "127.0.0.1:4222", "client address of the embedded JetStream server (for waggle events tail, separate host agents, ...)")
	f.StringVar(&o.gossipListen, "gossip-listen", "127.0.0.1:7946", "gossip address of the first host agent; further agents take the next ports")
	f.IntVar(&o.hosts, "hosts", 1, "host agents to run in this process (0: none; separate waggle hostagent processes join)")
	f.IntVar(&o.routers, "routers", 1, "MCP routers to run in this process, on consecutive ports from --listen")
	f.BoolVar(&o.noAuth, "no-auth", false, "serve every caller without an API key (only when --listen is loopback)")
	f.StringVar(&o.router.TLSCert, "tls-cert", "", "PEM certificate the routers serve HTTPS with (with --tls-key)")
	f.StringVar(&o.router.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	f.IntVar(&o.agent.Capacity.MemoryMiB, "capacity-memory", o.agent.Capacity.MemoryMiB,
		"memory each host agent offers, MiB; the default is this machine's less a reserve, shared by --hosts")
	f.IntVar(&o.agent.Capacity.CPUs, "capacity-cpus", o.agent.Capacity.CPUs,
		fmt.Sprintf("virtual CPUs each host agent offers; the default is this machine's CPUs × %d, shared by --hosts", hostagent.CPUOvercommit))
	f.IntVar(&o.agent.Capacity.MaxEnvironments, "max-environments", o.agent.Capacity.MaxEnvironments, "most VMs per host agent (warm pool included; the default is shared by --hosts)")
	f.IntVar(&o.agent.WarmPool, "warm-pool", 0, "pre-booted VMs kept per runtime on each host (0: none)")
	f.StringSliceVar(&o.agent.WarmRuntimes, "warm-runtimes", o.agent.WarmRuntimes, "runtimes the warm pool keeps")
	addSnapshotStoreFlag(f, &o.agent.SnapshotStore)
	f.IntVar(&o.maxFileBytes, "max-file-bytes", o.router.Limits.MaxFileBytes, "largest file write_file and read_file move")
	f.IntVar(&o.router.MaxEnvsPerTenant, "max-envs-per-tenant", o.router.MaxEnvsPerTenant, "live environments a tenant may have (0 = unlimited)")
	f.IntVar(&o.router.MaxCallsPerTenant, "max-calls-per-tenant", o.router.MaxCallsPerTenant, "tool calls one tenant may have in progress on each router at once (0 = unlimited)")
	o.host.vm.addFlags(f, vnet.EgressPackages)
	o.host.packages.addFlags(f)
	f.StringVar(&o.host.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "also serve the metrics of every role at http://ADDR/metrics (each router serves them at its /metrics too)")
	return cmd
}

// shareCapacity divides the machine's capacity among the hosts host agents of `waggle up`,
// for each of the capacity flags left at its default.
func shareCapacity(f *pflag.FlagSet, c *hostagent.Capacity, hosts int) {
	share := c.Share(hosts)
	if !f.Changed("capacity-memory") {
		c.MemoryMiB = share.MemoryMiB
	}
	if !f.Changed("capacity-cpus") {
		c.CPUs = share.CPUs
	}
	if !f.Changed("max-environments") {
		c.MaxEnvironments = share.MaxEnvironments
	}
}

func runUp(ctx context.Context, stdout, stderr io.Writer, o upOptions) error {
	logger, err := newLogger(stderr, o.host.logLevel)
	if err != nil {
		return err
	}
	o.router.NoAuth = o.noAuth
	// One set of limits: the host agents refuse what the routers refuse.
	o.router.Limits.MaxFileBytes = o.maxFileBytes
	o.agent.Limits = o.router.Limits
	if err := o.router.Validate(); err != nil {
		return err
	}
	if _, err := vnet.ParsePolicy(o.host.vm.egress); err != nil {
		return fmt.Errorf("--egress: %w", err)
	}
	// Searchable, not listable, by others: each VM's QEMU runs as an unprivileged uid of its own
	// and must reach its VM directory below (everything in here has its own permissions).
	if err := os.MkdirAll(o.dataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	cache := o.host.cacheDir
	if cache == "" {
		cache = cacheDir(o.dataDir)
	}
	// Every long step is a stage line with its time on stderr; the first start builds the
	// guest images and fetches the kernel (minutes), later ones find them cached.
	rep := progress.New(stderr)
	if o.hosts > 0 {
		rep.Printf("up", "checking guest images (built on first use; this takes a few minutes once)")
		bcfg := images.DefaultBuildConfig()
		bcfg.CacheDir, bcfg.Progress = cache, rep
		if err := images.Build(ctx, bcfg); err != nil {
			return err
		}
	}

	natsHost, natsPort, err := splitHostPort("--nats-listen", o.natsListen)
	if err != nil {
		return err
	}
	// Every role connects with its own credential, and the server's permissions keep them apart.
	roles := []access.Role{adminRole, operatorRole, routerRole, {Kind: access.Projector, ID: access.DefaultProjector}}
	for i := range o.hosts {
		roles = append(roles, access.Role{Kind: access.HostAgent, ID: upHostID(i)})
	}
	trust, err := openTrust(ctx, stderr, credsDir(o.dataDir), true, roles...)
	if err != nil {
		return err
	}
	auth := trust.Server()
	reg := newRegistry()
	c := &upConns{trust: trust, metrics: reg}
	defer c.close()
	var log *events.Log
	err = rep.Stage("up", "jetstream", "", func() (string, error) {
		srv, err := events.StartServer(events.ServerConfig{
			DataDir: filepath.Join(o.dataDir, "nats"), Host: natsHost, Port: natsPort,
			ServerName: "waggle-up", Auth: &auth, Logger: logger,
		})
		if err != nil {
			return "", err
		}
		c.srv = srv
		if err := events.RegisterServerMetrics(reg, srv); err != nil {
			return "", err
		}
		admin, err := c.connect(ctx, adminRole, "admin")
		if err != nil {
			return "", err
		}
		if log, err = setupCluster(ctx, admin.nc, 0); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, stream %s at seq %d", srv.ClientURL(), events.StreamName, log.Stream().CachedInfo().State.LastSeq), nil
	})
	if c.srv != nil {
		defer c.srv.Shutdown()
	}
	if err != nil {
		return err
	}
	srv := c.srv
	gossipKey, err := membership.LoadOrCreateKey(filepath.Join(o.dataDir, membership.KeyFileName))
	if err != nil {
		return err
	}
	o.agent.Membership.SecretKey = gossipKey

	o.agent.Metrics, o.router.Metrics = reg, reg
	agents, err := upHostAgents(ctx, o, cache, c, logger, rep)
	if err != nil {
		return err
	}
	routers, key, err := upRouters(ctx, o, log, c, logger)
	if err != nil {
		return err
	}
	projRole := roles[3]
	projConn, err := c.connect(ctx, projRole, "projector")
	if err != nil {
		return err
	}

	// Roles stop in order so that the view ends consistent: routers first (no new work), then
	// host agents (they drain and append their last events), then the projector once it has
	// applied those. gctx ends on Ctrl-C or when any role fails.
	g, gctx := errgroup.WithContext(ctx)
	agentsCtx, stopAgents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgents()
	projCtx, stopProjector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProjector()

	pcfg := projector.DefaultConfig()
	pcfg.Logger, pcfg.Metrics = logger.With("role", "projector"), reg
	pcfg.Consumer = projConn.durable
	proj, err := projector.New(pcfg, projConn.log)
	if err != nil {
		return err
	}
	var ms *metricsServer
	if o.metricsListen != "" {
		if ms, err = listenMetrics(o.metricsListen, reg); err != nil {
			return err
		}
	}
	projDone := make(chan struct{})
	g.Go(func() error {
		defer close(projDone)
		return proj.Run(projCtx)
	})
	var agentsRunning, routersRunning sync.WaitGroup
	for _, a := range agents {
		agentsRunning.Add(1)
		g.Go(func() error {
			defer agentsRunning.Done()
			return a.Run(agentsCtx)
		})
	}
	for _, r := range routers {
		routersRunning.Add(1)
		g.Go(func() error {
			defer routersRunning.Done()
			return r.Run(gctx)
		})
	}
	if ms != nil {
		g.Go(func() error { return ms.Serve(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		routersRunning.Wait()
		stopAgents()
		agentsRunning.Wait()
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := waitProjected(stopCtx, log, proj, projDone); err != nil {
			logger.Warn("stop: the view may miss the last events", "err", err)
		}
		stopProjector()
		return nil
	})

	// Ready means every router listens, every host agent has joined and the view shows them.
	// gctx ends early when a role failed (a router could not listen, say): report that failure.
	failed := func(err error) error {
		if werr := g.Wait(); werr != nil {
			return werr
		}
		return err
	}
	urls := make([]string, 0, len(routers))
	err = rep.Stage("up", "roles", "", func() (string, error) {
		scheme := "http"
		if o.router.TLSCert != "" {
			scheme = "https"
		}
		for _, r := range routers {
			addr, err := r.Addr(gctx)
			if err != nil {
				return "", err
			}
			urls = append(urls, scheme+"://"+addr.String()+"/mcp")
		}
		for _, a := range agents {
			select {
			case <-a.Ready():
			case <-gctx.Done():
				return "", gctx.Err()
			}
		}
		if err := waitProjected(gctx, log, proj, projDone); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d host agent(s) joined, %d router(s) listening, view at seq %d", len(agents), len(routers), proj.Applied()), nil
	})
	if err != nil {
		return failed(err)
	}
	fmt.Fprintf(stdout, "waggle is up: JetStream at %s, %d host agent(s)\n", srv.ClientURL(), len(agents))
	for _, u := range urls {
		fmt.Fprintf(stdout, "MCP: %s\n", u)
	}
	if ms != nil {
		fmt.Fprintf(stdout, "Metrics: %s\n", ms.URL())
	}
	if key != "" {
		fmt.Fprintf(stdout, "API key (Authorization: Bearer ...): %s\n", key)
	}
	fmt.Fprintf(stdout, "NATS credentials: %s (operator.creds for waggle events tail, audit, replay and natscli; admin.creds for waggle token)\n",
		trust.Dir())
	fmt.Fprintf(stdout, "Gossip key for separate host agents: %s\n", filepath.Join(o.dataDir, membership.KeyFileName))
	fmt.Fprintln(stdout, "Ctrl-C stops everything.")
	return g.Wait()
}

// upHostID is the id of the i-th host agent of `waggle up`.
func upHostID(i int) string { return "host" + strconv.Itoa(i+1) }

// upHostAgents builds the host agents of `waggle up`: host1..hostN, each with its own state
// directory, gossip port and connection (its own credential), all joining the first.
func upHostAgents(ctx context.Context, o upOptions, cache string, c *upConns, logger *slog.Logger, rep *progress.Reporter) ([]*hostagent.Agent, error) {
	agents := make([]*hostagent.Agent, 0, o.hosts)
	first, err := offsetAddr(o.gossipListen, 0)
	if err != nil {
		return nil, err
	}
	for i := range o.hosts {
		cfg := o.agent
		cfg.HostID = upHostID(i)
		cfg.DataDir = filepath.Join(o.dataDir, "hosts", cfg.HostID)
		cfg.Membership.BindAddr, _ = offsetAddr(o.gossipListen, i)
		if i > 0 {
			cfg.Membership.Join = []string{first}
		}
		hlog := logger.With("role", "hostagent")
		opts := o.host
		opts.cacheDir = cache
		if err := opts.packages.apply(&cfg, cfg.DataDir); err != nil {
			return nil, err
		}
		machines, err := newVMMachines(ctx, cfg.DataDir, opts, hlog, rep, cfg.HostID)
		if err != nil {
			return nil, err
		}
		conn, err := c.connect(ctx, access.Role{Kind: access.HostAgent, ID: cfg.HostID}, cfg.HostID)
		if err != nil {
			return nil, err
		}
		cfg.Logger, cfg.Consumer = hlog, conn.durable
		a, err := hostagent.New(cfg, conn.log, conn.nc, machines)
		if err != nil {
			return nil, err
		}
		agents = append(agents, a)
	}
	return agents, nil
}

// upRouters builds the routers of `waggle up`, on consecutive ports, each with its own
// connection, and returns them with the API key it created on first start (empty when it
// already existed or authentication is off). The key is made with the admin's log.
func upRouters(ctx context.Context, o upOptions, admin *events.Log, c *upConns, logger *slog.Logger) ([]*router.Router, string, error) {
	key := ""
	if !o.noAuth {
		k, created, err := router.EnsureFirstToken(ctx, admin.JetStream(), o.dataDir)
		if err != nil {
			return nil, "", err
		}
		if created {
			key = k
		} else {
			logger.Info("using the existing API key", "file", filepath.Join(o.dataDir, "api-key"))
		}
	}
	routers := make([]*router.Router, 0, o.routers)
	for i := range o.routers {
		cfg := o.router
		cfg.ID = "router" + strconv.Itoa(i+1)
		cfg.Logger = logger.With("role", "router")
		var err error
		if cfg.Listen, err = offsetAddr(o.listen, i); err != nil {
			return nil, "", err
		}
		conn, err := c.connect(ctx, routerRole, cfg.ID)
		if err != nil {
			return nil, "", err
		}
		view, err := projector.NewReader(conn.log.JetStream())
		if err != nil {
			return nil, "", err
		}
		deps := router.Deps{NC: conn.nc, Log: conn.log, View: view, MCP: mcp.Handler}
		if !o.noAuth {
			if deps.Tokens, err = router.OpenTokens(ctx, conn.log.JetStream()); err != nil {
				return nil, "", err
			}
		}
		r, err := router.New(cfg, deps)
		if err != nil {
			return nil, "", err
		}
		routers = append(routers, r)
	}
	return routers, key, nil
}

// upConns are the in-process connections of `waggle up`'s roles, each with its role's
// credential from the data directory. The event log of each (the admin's aside) registers its
// metrics with metrics, labelled with its client (router1, host1, projector).
type upConns struct {
	srv     *events.Server
	trust   *access.Trust
	metrics prometheus.Registerer
	open    []*nats.Conn
}

// upConn is one role's connection, its bound log and (host agents, projectors) its durable
// consumer's name.
type upConn struct {
	nc      *nats.Conn
	log     *events.Log
	durable string
}

// connect connects as r; client names the connection ("waggle up (client)") and the log's
// metrics.
func (c *upConns) connect(ctx context.Context, r access.Role, client string) (*upConn, error) {
	path, err := c.trust.EnsureCreds(r)
	if err != nil {
		return nil, err
	}
	opts, err := access.ConnectOptions(path)
	if err != nil {
		return nil, err
	}
	nc, err := c.srv.Connect(append(opts, nats.Name("waggle up ("+client+")"))...)
	if err != nil {
		return nil, err
	}
	c.open = append(c.open, nc)
	conn := &upConn{nc: nc}
	if r.Kind == access.HostAgent || r.Kind == access.Projector {
		if conn.durable, err = access.Durable(path); err != nil {
			return nil, err
		}
	}
	if r.Kind != access.Admin { // the admin's setup makes the stream; the others bind to it
		metrics := prometheus.WrapRegistererWith(prometheus.Labels{"client": client}, c.metrics)
		if conn.log, err = events.BindLog(ctx, nc, events.WithMetrics(metrics)); err != nil {
			return nil, err
		}
	}
	return conn, nil
}

func (c *upConns) close() {
	for i := len(c.open) - 1; i >= 0; i-- {
		c.open[i].Close()
	}
}

// waitProjected waits until the projector has applied every event stored so far (at start,
// so the view shows the host agents; at stop, so the view matches the history).
func waitProjected(ctx context.Context, log *events.Log, proj *projector.Projector, done <-chan struct{}) error {
	last, err := log.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("read the stream's last sequence: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for proj.Applied() < last {
		select {
		case <-done:
			return errors.New("the projector stopped")
		case <-ctx.Done():
			return fmt.Errorf("the projector applied %d of %d events: %w", proj.Applied(), last, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// offsetAddr is HOST:(PORT+i); port 0 stays 0 (any free port).
func offsetAddr(addr string, i int) (string, error) {
	host, port, err := splitHostPort("address", addr)
	if err != nil {
		return "", err
	}
	if port == 0 {
		return addr, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(port+i)), nil
}
