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
	cfg     Config
	sshCfg  *ssh.ServerConfig
	authKey []byte
	log     *slog.Logger
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
	s := &Server{cfg: cfg, authKey: cfg.AuthorizedKey.Marshal(), log: cfg.Logger}
	s.sshCfg = &ssh.ServerConfig{
		PublicKeyCallback: s.checkKey,
		MaxAuthTries:      3,
		ServerVersion:     "SSH-2.0-waggle",
	}
	s.sshCfg.AddHostKey(cfg.HostKey)
	return s, nil
}

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if subtle.ConstantTimeCompare(key.Marshal(), s.authKey) == 1 {
		return &ssh.Permissions{}, nil
	}
	s.log.Warn("ssh key refused", "remote", meta.RemoteAddr().String(), "key", ssh.FingerprintSHA256(key))
	return nil, errors.New("key not authorized")
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
			s.serveConn(ctx, nc)
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
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout)) // a broken conn fails the handshake
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		s.log.Debug("ssh handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	log := s.log.With("remote", nc.RemoteAddr().String())
	log.Debug("ssh connection open")
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.globalRequests(reqs) })
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

func (s *Server) globalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		if req.Type == wire.PowerOffRequest && s.cfg.PowerOff != nil {
			_ = req.Reply(true, nil)
			s.log.Info("power-off requested over ssh")
			s.cfg.PowerOff()
			continue
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}
