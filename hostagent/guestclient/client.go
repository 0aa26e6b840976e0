// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guestclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Sentinel errors. Every error this package returns for one of these conditions wraps the
// matching sentinel.
var (
	ErrNotFound   = errors.New("no such file or directory")
	ErrIsDir      = errors.New("is a directory")
	ErrNotDir     = errors.New("not a directory")
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("too large")
	ErrPermission = errors.New("permission denied")
	ErrInvalid    = errors.New("invalid request")
	ErrClosed     = errors.New("guest connection closed")
	ErrBusy       = errors.New("guest busy: too many concurrent sessions")
)

// Client is one SSH connection to a guest. It is safe for concurrent use; every Exec opens its own
// session, and file operations share one SFTP session.
type Client struct {
	ssh *ssh.Client

	mu     sync.Mutex
	sftp   *sftp.Client // nil until first used, or after it failed
	closed bool
}

// Option configures Dial.
type Option func(*ssh.ClientConfig)

// WithHostKey makes Dial accept only the guest host key k (announced on the console, see
// wire.ParseHostKeyLine). Without it any host key is accepted, which is sound only because the
// conn is the VM's private channel.
func WithHostKey(k ssh.PublicKey) Option {
	return func(c *ssh.ClientConfig) { c.HostKeyCallback = ssh.FixedHostKey(k) }
}

// Dial performs the SSH handshake on conn, authenticating with signer. conn belongs to the client
// from then on, also when Dial fails. ctx bounds the handshake only.
func Dial(ctx context.Context, conn net.Conn, signer ssh.Signer, opts ...Option) (*Client, error) {
	cfg := &ssh.ClientConfig{
		User:            wire.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	}
	for _, o := range opts {
		o(cfg)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl) // a broken conn fails the handshake
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewClientConn(conn, "guest", cfg)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			sc.Close()
		}
		conn.Close()
		return nil, fmt.Errorf("guest ssh handshake: %w", context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("guest ssh handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &Client{ssh: ssh.NewClient(sc, chans, reqs)}, nil
}

// Wait blocks until the connection is closed (by Close, or because the guest went away).
func (c *Client) Wait() error { return c.ssh.Wait() }

// Close closes the connection; sessions still running are closed, which kills their process
// groups in the guest.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	sc := c.sftp
	c.sftp = nil
	c.mu.Unlock()
	if sc != nil {
		sc.Close()
	}
	return c.ssh.Close()
}

// PowerOff asks the guest to power off. It returns once the guest acknowledged (or the connection
// dropped because the guest went away first); the client is closed afterwards.
func (c *Client) PowerOff(ctx context.Context) error {
	defer c.Close()
	_, err := do(ctx, func() (struct{}, error) {
		ok, _, err := c.ssh.SendRequest(wire.PowerOffRequest, true, nil)
		switch {
		case errors.Is(err, io.EOF):
			return struct{}{}, nil
		case err != nil:
			return struct{}{}, fmt.Errorf("power off: %w: %w", ErrClosed, err)
		case !ok:
			return struct{}{}, errors.New("power off: refused by the guest")
		}
		return struct{}{}, nil
	}, func() { c.ssh.Close() }, nil)
	return err
}

// Identify gives a guest restored from a snapshot its new identity (see wire.IdentityRequest)
// and returns its new host key. The guest closes this connection afterwards: reconnect with
// the new keys.
func (c *Client) Identify(ctx context.Context, id wire.Identity) (ssh.PublicKey, error) {
	payload, err := wire.EncodeIdentity(id)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	return do(ctx, func() (ssh.PublicKey, error) {
		ok, reply, err := c.ssh.SendRequest(wire.IdentityRequest, true, payload)
		switch {
		case err != nil:
			return nil, fmt.Errorf("identify: %w: %w", ErrClosed, err)
		case !ok:
			return nil, fmt.Errorf("identify: refused by the guest: %s", reply)
		}
		k, err := wire.DecodeIdentityReply(reply)
		if err != nil {
			return nil, fmt.Errorf("identify: %w", err)
		}
		return k, nil
	}, func() { c.ssh.Close() }, nil)
}

// abortWait bounds how long do waits for an aborted operation to notice.
const abortWait = time.Second

// do runs fn and returns its result, or, if ctx ends first, calls abort (which should make fn
// return) and returns ctx's error. A result of fn that arrives after do gave up is passed to
// release (if not nil), also when fn ignored the abort and returns later.
func do[T any](ctx context.Context, fn func() (T, error), abort func(), release func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	abort()
	discard := func(r result) {
		if r.err == nil && release != nil {
			release(r.v)
		}
	}
	select {
	case r := <-done:
		discard(r)
	case <-time.After(abortWait):
		go func() { discard(<-done) }()
	}
	var zero T
	return zero, context.Cause(ctx)
}
