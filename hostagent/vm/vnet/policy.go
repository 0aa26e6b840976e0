// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/waggle-dev/waggle/internal/netaddr"
)

// Egress policy names, as ParsePolicy reads them.
const (
	EgressNone     = "none"     // the guest opens no connection at all
	EgressPackages = "packages" // the host's package proxy only
	egressAllow    = "allow:"   // allow:HOST|CIDR,... : the package proxy, and TCP 80/443 to those
)

// EgressPort reports whether an allowed destination may be reached on TCP port p: HTTP and
// HTTPS only.
func EgressPort(p uint16) bool { return p == 80 || p == 443 }

// Refused reports whether a guest may never reach addr, whatever the policy says or a name
// resolves to: an address that is not public (this host, private networks, carrier-grade NAT,
// link-local cloud metadata, non-unicast space; see netaddr), and every IPv6 address (the
// filter drops every IPv6 frame).
func Refused(addr netip.Addr) bool {
	addr = addr.Unmap()
	return !addr.Is4() || !netaddr.Public(addr)
}

// Policy is what a guest may connect to: the host's package proxy if Proxy is set, and TCP on
// an EgressPort to the addresses Hosts resolve to (on the host, by the shim) and to Nets. The
// zero Policy allows nothing.
type Policy struct {
	// Proxy lets the guest reach the host's package proxy: wire.PackageProxyHost resolves to
	// the gateway, whose wire.PackageProxyPort the shim relays to the proxy.
	Proxy bool `json:"proxy,omitempty"`
	// Hosts are lower-case DNS names, matched exactly (no wildcard, no subdomains).
	Hosts []string `json:"hosts,omitempty"`
	// Nets are IPv4 networks outside the refused ranges.
	Nets []netip.Prefix `json:"nets,omitempty"`
}

// None reports whether the policy allows no egress at all.
func (p Policy) None() bool { return !p.Proxy && len(p.Hosts) == 0 && len(p.Nets) == 0 }

// String is the policy in the form ParsePolicy reads.
func (p Policy) String() string {
	if p.None() {
		return EgressNone
	}
	if len(p.Hosts) == 0 && len(p.Nets) == 0 {
		return EgressPackages
	}
	items := slices.Clone(p.Hosts)
	for _, n := range p.Nets {
		items = append(items, n.String())
	}
	return egressAllow + strings.Join(items, ",")
}

// AllowsHost reports whether name (any case, with or without the final dot) is one of Hosts.
func (p Policy) AllowsHost(name string) bool { return slices.Contains(p.Hosts, hostKey(name)) }

// hostKey is name as Hosts holds it: lower case, without the final dot.
func hostKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// ErrBadPolicy is wrapped by ParsePolicy's errors.
var ErrBadPolicy = errors.New("bad egress policy")

// ParsePolicy reads "none", "packages" or "allow:ITEM,ITEM,..." where an item is a host name
// (e.g. pypi.org) or an IPv4 CIDR or address (e.g. 203.0.113.0/24). Items in the refused ranges
// (private, loopback, link-local, ...) are an error, not silently dropped. Every policy but
// "none" reaches the package proxy.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case EgressNone:
		return Policy{}, nil
	case EgressPackages:
		return Policy{Proxy: true}, nil
	}
	list, ok := strings.CutPrefix(s, egressAllow)
	if !ok {
		return Policy{}, fmt.Errorf("%w %q: want none, packages or allow: and a comma-separated list of hosts and IPv4 CIDRs", ErrBadPolicy, s)
	}
	p := Policy{Proxy: true}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if err := p.add(item); err != nil {
			return Policy{}, fmt.Errorf("%w: %q: %w", ErrBadPolicy, item, err)
		}
	}
	if len(p.Hosts) == 0 && len(p.Nets) == 0 {
		return Policy{}, fmt.Errorf("%w: empty allow list (use none or packages)", ErrBadPolicy)
	}
	return p, nil
}

// add appends one allow-list item.
func (p *Policy) add(item string) error {
	if item == "" {
		return nil
	}
	if strings.ContainsAny(item, "/:") || isIPv4(item) {
		prefix, err := netip.ParsePrefix(item)
		if err != nil {
			addr, aerr := netip.ParseAddr(item)
			if aerr != nil {
				return err
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		prefix = prefix.Masked()
		if !prefix.Addr().Is4() {
			return errors.New("only IPv4 networks (the guest has no IPv6 egress)")
		}
		for _, r := range netaddr.NonPublic() {
			if r.Overlaps(prefix) {
				return fmt.Errorf("overlaps the refused range %s", r)
			}
		}
		if !slices.Contains(p.Nets, prefix) {
			p.Nets = append(p.Nets, prefix)
		}
		return nil
	}
	name := hostKey(item)
	if !validHostname(name) {
		return errors.New("not a host name or IPv4 CIDR")
	}
	if !slices.Contains(p.Hosts, name) {
		p.Hosts = append(p.Hosts, name)
	}
	return nil
}

// isIPv4 reports whether s looks like a dotted IPv4 address (digits and dots only), so that a
// malformed one is reported as such rather than taken for a host name.
func isIPv4(s string) bool {
	return strings.Trim(s, "0123456789.") == "" && strings.Contains(s, ".")
}

// validHostname accepts lower-case DNS names: labels of 1-63 letters, digits and '-' (not at
// either end), at least two labels, 253 characters at most, not all-numeric at the top.
func validHostname(name string) bool {
	if len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}
