// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultMaxPayload is the largest message the embedded server accepts unless configured.
const DefaultMaxPayload = 8 << 20

// MaxControlLine is the longest protocol line the server takes (the default, 4 KiB, is too
// short for a CONNECT carrying a role's JWT with its permission lists).
const MaxControlLine = 64 << 10

// serverReadyTimeout bounds how long StartServer waits for listeners and JetStream.
const serverReadyTimeout = 30 * time.Second

// ServerConfig configures one embedded NATS JetStream server (a node).
type ServerConfig struct {
	DataDir     string   // JetStream file store lives in DataDir/jetstream; required
	Host        string   // client listen host, default 127.0.0.1
	Port        int      // client port; 0 = random free port; -1 = no TCP listener (in-process only)
	ServerName  string   // unique per node; required for clusters
	ClusterName string   // empty = standalone
	ClusterHost string   // route listen host, default Host
	ClusterPort int      // route port; 0 = random free port
	Routes      []string // nats://host:port of every node (self allowed)
	MaxPayload  int32    // default DefaultMaxPayload (8 MiB)
	// SyncAlways fsyncs every write: a standalone node then keeps acknowledged events through
	// a power loss, at about a tenth of the append rate. Without it the file store is synced
	// every 2 minutes; in a cluster the replication quorum is the durability boundary.
	SyncAlways bool
	// Auth, when set, makes the server refuse every client without a credential it trusts.
	Auth *ServerAuth
	// TLS, when set, makes client and route connections use TLS.
	TLS *TLSFiles
	// Logger receives the server's own log lines; nil discards them.
	Logger *slog.Logger
}

// ServerAuth is decentralized JWT authentication with one trusted operator: clients connect
// with a user JWT (a .creds file) signed by an account the operator signed; each user's
// permissions are in its JWT (see package events/access).
type ServerAuth struct {
	OperatorJWT   string
	SystemAccount string // the system account's public key
	// AccountJWTs are the accounts' JWTs by public key, stored into the server's account
	// resolver (a directory under DataDir) at start unless it holds newer ones.
	AccountJWTs map[string]string
}

// TLSFiles are the PEM files of a TLS setup: this side's certificate and key, and the CA that
// signed the other side's (clients verify the server with it; servers verify routes with it).
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// resolverDir is where a server with Auth keeps account JWTs (pushed updates included).
const resolverDir = "jwt"

// Server is a running embedded NATS server with JetStream enabled.
type Server struct {
	ns *server.Server
}

// StartServer starts a node and waits until it accepts connections and JetStream is enabled.
// A cluster node does not wait for its peers: the JetStream meta leader appears once a quorum
// of nodes runs, and OpenLog retries until then.
func StartServer(cfg ServerConfig) (*Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := &serverLog{l: logger.With("component", "nats", "server", cfg.ServerName)}
	ns.SetLoggerV2(log, false, false, false)
	ns.Start()
	fail := func(what string) (*Server, error) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if last := log.lastError(); last != "" {
			return nil, fmt.Errorf("nats server %q: %s: %s", cfg.ServerName, what, last)
		}
		return nil, fmt.Errorf("nats server %q: %s", cfg.ServerName, what)
	}
	if !ns.ReadyForConnections(serverReadyTimeout) {
		return fail(fmt.Sprintf("not ready for connections after %s", serverReadyTimeout))
	}
	// Start enables JetStream before it reports ready; a short wait covers the rest.
	for deadline := time.Now().Add(time.Second); !ns.JetStreamEnabled(); {
		if time.Now().After(deadline) {
			return fail("JetStream did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &Server{ns: ns}, nil
}

func (cfg ServerConfig) options() (*server.Options, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("nats server: DataDir is required")
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	maxPayload := cfg.MaxPayload
	if maxPayload == 0 {
		maxPayload = DefaultMaxPayload
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.DataDir, // the server adds "jetstream"
		MaxPayload: maxPayload,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		// A client's CONNECT line carries its user JWT, which lists its permissions.
		MaxControlLine: MaxControlLine,
	}
	switch cfg.Port {
	case 0:
		opts.Port = server.RANDOM_PORT
	case -1:
		opts.DontListen = true
		opts.Port = 0
	}
	if err := cfg.applyAuth(opts); err != nil {
		return nil, err
	}
	tlsConfig, err := cfg.TLS.serverConfig()
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tlsConfig, true, false, 2
	}
	if cfg.ClusterName == "" {
		if len(cfg.Routes) > 0 {
			return nil, errors.New("nats server: Routes need a ClusterName")
		}
		return opts, nil
	}
	if cfg.ServerName == "" {
		return nil, errors.New("nats server: a cluster node needs a unique ServerName")
	}
	if len(cfg.Routes) == 0 {
		return nil, errors.New("nats server: a cluster node needs Routes (every node's route URL; its own is allowed)")
	}
	clusterHost := cfg.ClusterHost
	if clusterHost == "" {
		clusterHost = host
	}
	clusterPort := cfg.ClusterPort
	if clusterPort == 0 {
		clusterPort = server.RANDOM_PORT
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: clusterHost, Port: clusterPort}
	if tlsConfig != nil {
		// Routes authenticate each other with certificates of the same CA.
		routeTLS := tlsConfig.Clone()
		routeTLS.ClientAuth = tls.RequireAndVerifyClientCert
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = routeTLS, 2
	}
	for _, r := range cfg.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("nats server: route %q: want nats://host:port", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return opts, nil
}

// ClientURL is the nats:// URL clients connect to. Without a TCP listener (Port -1) it is not
// dialable; use Connect.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// ClusterURL is the nats:// URL other nodes use as a route to this one, or "" when standalone.
func (s *Server) ClusterURL() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
}

// Connect opens an in-process client connection (no TCP).
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("waggle-inproc")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect in-process to %s: %w", s.ns.Name(), err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// NATS is the underlying server, for status queries (JetStreamIsLeader, ...).
func (s *Server) NATS() *server.Server { return s.ns }

// serverLog writes the server's log lines to slog and remembers the last error, so a failed
// start can say why.
type serverLog struct {
	l       *slog.Logger
	mu      sync.Mutex
	lastErr string
}

func (s *serverLog) lastError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *serverLog) recordError(format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	s.mu.Lock()
	s.lastErr = msg
	s.mu.Unlock()
	s.l.Error(msg)
}

func (s *serverLog) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s *serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLog) Fatalf(format string, v ...any)  { s.recordError(format, v) }
func (s *serverLog) Errorf(format string, v ...any)  { s.recordError(format, v) }
func (s *serverLog) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

// applyAuth configures operator mode: the trusted operator, the system account and a directory
// account resolver holding the accounts' JWTs.
func (cfg ServerConfig) applyAuth(opts *server.Options) error {
	if cfg.Auth == nil {
		return nil
	}
	op, err := jwt.DecodeOperatorClaims(cfg.Auth.OperatorJWT)
	if err != nil {
		return fmt.Errorf("nats server: operator JWT: %w", err)
	}
	res, err := server.NewDirAccResolver(filepath.Join(cfg.DataDir, resolverDir), 0, time.Minute, server.NoDelete)
	if err != nil {
		return fmt.Errorf("nats server: account resolver: %w", err)
	}
	for pub, token := range cfg.Auth.AccountJWTs {
		if err := res.Store(pub, token); err != nil {
			return fmt.Errorf("nats server: store account %s: %w", pub, err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{op}
	opts.SystemAccount = cfg.Auth.SystemAccount
	opts.AccountResolver = res
	return nil
}

// serverConfig is the TLS configuration of a server that presents CertFile and verifies
// clients' certificates against CAFile when they send one (nil without TLS).
func (t *TLSFiles) serverConfig() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("nats server: TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := loadCA(t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.RootCAs = pool, pool
	}
	return cfg, nil
}

// loadCA reads a PEM bundle of CA certificates.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}
