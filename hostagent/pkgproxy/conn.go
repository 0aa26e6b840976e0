// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Each connection a shim relays to the proxy's unix socket starts with one line naming the
// VM it comes from ("WAGGLE-VM <id>\n"); the guest's own bytes follow. Only processes that may
// open the socket (mode 0600: the host agent's user, as the shims) can connect, and the guest
// cannot write before the shim has written the line, so a guest cannot claim another VM's
// identity.
const preambleTag = "WAGGLE-VM "

// vmIDRE is a VM id as the VM layer makes them.
var vmIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// DialVM connects to the proxy listening on the unix socket path on behalf of VM vm.
func DialVM(ctx context.Context, path, vm string) (net.Conn, error) {
	if !vmIDRE.MatchString(vm) {
		return nil, fmt.Errorf("package proxy: bad vm id %q", vm)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("package proxy: %w", err)
	}
	if _, err := c.Write([]byte(preambleTag + vm + "\n")); err != nil {
		c.Close()
		return nil, fmt.Errorf("package proxy: %w", err)
	}
	return c, nil
}

// Listen listens on the unix socket path (replacing a socket a previous run left), readable
// and writable by this user only.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("package proxy: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("package proxy: %w", err)
	}
	return ln, nil
}

// vmConn is a relayed connection; its first Read consumes the preamble.
type vmConn struct {
	net.Conn
	once sync.Once
	r    *bufio.Reader
	vm   string
	err  error
}

// errPreamble refuses a connection that does not start with a VM's preamble.
var errPreamble = errors.New("package proxy: connection without a VM preamble")

func (c *vmConn) Read(p []byte) (int, error) {
	c.once.Do(c.readPreamble)
	if c.err != nil {
		return 0, c.err
	}
	return c.r.Read(p)
}

func (c *vmConn) readPreamble() {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.r = bufio.NewReader(c.Conn)
	line, err := c.r.ReadSlice('\n')
	_ = c.SetReadDeadline(time.Time{})
	id, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), preambleTag)
	if err != nil || !ok || !vmIDRE.MatchString(id) {
		c.err = errPreamble
		c.Close() // unanswered
		return
	}
	c.vm = id
}

// VM is the id of the VM the connection comes from.
func (c *vmConn) VM() string {
	c.once.Do(c.readPreamble)
	if c.err != nil {
		return ""
	}
	return c.vm
}

// vmListener wraps each accepted connection in a vmConn.
type vmListener struct{ net.Listener }

func (l vmListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &vmConn{Conn: c}, nil
}

type connKey struct{}

// vmOf is the VM a request came from, "" for none (a request not relayed by a shim).
func vmOf(ctx context.Context) string {
	if c, ok := ctx.Value(connKey{}).(*vmConn); ok {
		return c.VM()
	}
	return ""
}
