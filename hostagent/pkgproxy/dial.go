// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/waggle-dev/waggle/internal/netaddr"
)

// errNotPublic refuses an upstream connection to an address that is not public.
var errNotPublic = errors.New("not a public address")

// dialer opens the proxy's upstream connections: to the configured upstreams (and the host's
// HTTP proxy) wherever they are, and to any other host only at a public address
// (netaddr.Public). An index page's links and an upstream's redirects may name other hosts
// (PyPI's files are on files.pythonhosted.org); they cannot lead the proxy to this host's or
// its network's services, or to a cloud metadata service.
type dialer struct {
	trusted  map[string]bool // host:port of the configured upstreams
	net      net.Dialer
	resolver *net.Resolver
}

// newDialer trusts the upstreams' host:port and those of the HTTP proxies the environment sets.
func newDialer(upstreams []*url.URL) *dialer {
	d := &dialer{trusted: map[string]bool{}, resolver: net.DefaultResolver}
	env := httpproxy.FromEnvironment()
	for _, raw := range []string{env.HTTPProxy, env.HTTPSProxy} {
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			upstreams = append(upstreams, u)
		}
	}
	for _, u := range upstreams {
		d.trusted[hostPort(u)] = true
	}
	return d
}

// hostPort is u's host:port, the port from the scheme when u has none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if d.trusted[net.JoinHostPort(strings.ToLower(host), portStr)] {
		return d.net.DialContext(ctx, network, addr)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portStr, err)
	}
	ips, err := d.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		if !netaddr.Public(ip) {
			errs = append(errs, fmt.Errorf("%s: %w", ip, errNotPublic))
			continue
		}
		c, err := d.net.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial %s (not a configured upstream): %w", addr, errors.Join(errs...))
}

// newClient is the proxy's default upstream client: the host's trust store and HTTP proxy
// settings, dialing through a dialer that trusts upstreams.
func newClient(upstreams []*url.URL, headerTimeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = headerTimeout
	t.DialContext = newDialer(upstreams).DialContext
	return &http.Client{Transport: t}
}
