// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Server is the guest's SSH server. Create it with New and run it with Serve.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	sshCfg *ssh.ServerConfig     // the current keys; an identity request replaces it
	conns  map[net.Conn]struct{} // open connections
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.AuthorizedKey == nil:
		return nil, errors.New("sshd: no authorized key")
	case cfg.HostKey == nil:
		return nil, errors.New("sshd: no host key")
	case cfg.Shell == "":
		return nil, errors.New("sshd: no shell")
	case len(cfg.SFTPCommand) == 0:
		return nil, errors.New("sshd: no SFTP command")
	case cfg.MaxConns < 1 || cfg.MaxSessions < 1:
		return nil, errors.New("sshd: MaxConns and MaxSessions must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, conns: map[net.Conn]struct{}{}}
	s.sshCfg = s.serverConfig(cfg.HostKey, cfg.AuthorizedKey)
	return s, nil
}

// serverConfig accepts only the client key authorized and presents hostKey.
func (s *Server) serverConfig(hostKey ssh.Signer, authorized ssh.PublicKey) *ssh.ServerConfig {
	want := authorized.Marshal()
	c := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if subtle.ConstantTimeCompare(key.Marshal(), want) == 1 {
				return &ssh.Permissions{}, nil
			}
			s.log.Warn("ssh key refused", "remote", meta.RemoteAddr().String(), "key", ssh.FingerprintSHA256(key))
			return nil, errors.New("key not authorized")
		},
		MaxAuthTries:  3,
		ServerVersion: "SSH-2.0-waggle",
	}
	c.AddHostKey(hostKey)
	return c
}

// track adds nc to the open connections and returns the keys to serve it with.
func (s *Server) track(nc net.Conn) *ssh.ServerConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[nc] = struct{}{}
	return s.sshCfg
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, nc)
}

// Serve accepts connections on ln until ctx ends or ln is closed. When it returns, ln and every
// connection are closed and every session's process group has been killed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, s.cfg.MaxConns)
	for {
		nc, err := ln.Accept()
		switch {
		case ctx.Err() != nil:
			if err == nil {
				nc.Close()
			}
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("sshd: accept: %w", err)
		case err != nil:
			// Out of file descriptors or memory, say: wait for it to pass, keep serving.
			s.log.Warn("ssh accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !s.allowed(nc.RemoteAddr()) {
			s.log.Debug("ssh connection refused: foreign peer", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			s.log.Warn("ssh connection refused: too many connections", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			defer s.untrack(nc)
			s.serveConn(ctx, nc, s.track(nc))
		})
	}
}

// allowed reports whether a connection from addr may be served.
func (s *Server) allowed(addr net.Addr) bool {
	if !s.cfg.ClientAddr.IsValid() {
		return true
	}
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().Unmap() == s.cfg.ClientAddr
}

// serveConn runs one connection until the client closes it or ctx ends.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, sshCfg *ssh.ServerConfig) {
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout)) // a broken conn fails the handshake
	conn, chans, reqs, err := ssh.NewServerConn(nc, sshCfg)
	if err != nil {
		s.log.Debug("ssh handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	log := s.log.With("remote", nc.RemoteAddr().String())
	log.Debug("ssh connection open")
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.globalRequests(nc, reqs) })
	slots := make(chan struct{}, s.cfg.MaxSessions)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only session channels are served")
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			_ = nch.Reject(ssh.ResourceShortage, "too many sessions")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			<-slots
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			s.serveSession(ch, chReqs, log)
		})
	}
	conn.Close()
	log.Debug("ssh connection closed")
}

func (s *Server) globalRequests(nc net.Conn, reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch {
		case req.Type == wire.PowerOffRequest && s.cfg.PowerOff != nil:
			_ = req.Reply(true, nil)
			s.log.Info("power-off requested over ssh")
			s.cfg.PowerOff()
		case req.Type == wire.IdentityRequest && s.cfg.Identify != nil:
			s.identify(nc, req)
		case req.WantReply:
			_ = req.Reply(false, nil)
		}
	}
}

// identify serves a wire.IdentityRequest that arrived on nc.
func (s *Server) identify(nc net.Conn, req *ssh.Request) {
	id, authorized, err := wire.DecodeIdentity(req.Payload)
	if err != nil {
		s.log.Warn("identity request refused", "err", err)
		_ = req.Reply(false, nil)
		return
	}
	hostKey, err := s.cfg.Identify(id)
	if err != nil {
		s.log.Error("identity request failed", "err", err)
		_ = req.Reply(false, []byte(err.Error()))
		return
	}
	s.mu.Lock()
	s.sshCfg = s.serverConfig(hostKey, authorized)
	var old []net.Conn
	for c := range s.conns {
		if c != nc {
			old = append(old, c)
		}
	}
	s.mu.Unlock()
	_ = req.Reply(true, wire.EncodeIdentityReply(hostKey.PublicKey()))
	// Closing nc at once could lose the reply in a reset; the client closes it first.
	time.AfterFunc(s.cfg.IdentifyGrace, func() { nc.Close() })
	for _, c := range old {
		c.Close()
	}
	s.log.Info("new identity", "hostname", id.Hostname, "host_key", ssh.FingerprintSHA256(hostKey.PublicKey()),
		"closed_connections", len(old))
}
