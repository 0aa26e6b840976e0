// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

const (
	// nameTTL is how long a resolution of an allowed name is re-used, and the TTL of the
	// guest's answers.
	nameTTL = time.Minute
	// addrGrace is how long an address stays reachable after its name last resolved to it, so
	// that a guest holding an older answer (or a name whose addresses rotate) still connects.
	addrGrace = 15 * time.Minute
	// maxAnswers bounds the A records of one answer, keeping it well under 512 bytes.
	maxAnswers = 8
)

// LookupFunc resolves a host name to IPv4 addresses on the host (net.Resolver.LookupNetIP
// with network "ip4" in production).
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// egress is a VM's egress state: the policy, the addresses its host names resolved to, and
// the host resolver. The guest learns addresses only through its DNS queries, which egress
// answers for the allowed names alone: no query for any other name leaves the host.
type egress struct {
	policy Policy
	lookup LookupFunc
	now    func() time.Time

	mu    sync.Mutex
	names map[string]resolution
	addrs map[netip.Addr]time.Time // allowed address -> until when
}

type resolution struct {
	addrs []netip.Addr
	at    time.Time
}

func newEgress(policy Policy, lookup LookupFunc) *egress {
	return &egress{policy: policy, lookup: lookup, now: time.Now,
		names: make(map[string]resolution), addrs: make(map[netip.Addr]time.Time)}
}

// allow is the filter's AllowFunc: dst:port is the package proxy on the gateway (if the policy
// has it), or dst is in the policy's networks or a recent address of an allowed name, on an
// EgressPort, and outside the refused ranges.
func (e *egress) allow(dst netip.Addr, port uint16) bool {
	if dst == gatewayAddr && port == wire.PackageProxyPort {
		return e.policy.Proxy
	}
	if Refused(dst) || !EgressPort(port) {
		return false
	}
	for _, n := range e.policy.Nets {
		if n.Contains(dst) {
			return true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	until, ok := e.addrs[dst]
	return ok && e.now().Before(until)
}

// resolve returns the usable addresses of an allowed name, from the cache when fresh, and
// marks them allowed. When the host resolver fails, a stale answer is better than none.
func (e *egress) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	e.mu.Lock()
	r, ok := e.names[name]
	e.mu.Unlock()
	if !ok || e.now().Sub(r.at) >= nameTTL {
		addrs, err := e.lookup(ctx, name)
		switch {
		case err == nil:
			r = resolution{at: e.now()}
			for _, a := range addrs {
				if a = a.Unmap(); !Refused(a) && !slices.Contains(r.addrs, a) {
					r.addrs = append(r.addrs, a)
				}
			}
		case !ok:
			return nil, err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	e.names[name] = r
	for a, until := range e.addrs {
		if !now.Before(until) {
			delete(e.addrs, a)
		}
	}
	for _, a := range r.addrs {
		e.addrs[a] = now.Add(addrGrace)
	}
	return r.addrs, nil
}

// errNotQuery is returned for a DNS message that is not a single standard query.
var errNotQuery = errors.New("not a single standard query")

// answer returns the reply to a guest's DNS query: A records for an allowed name (the gateway
// for the package proxy's name; an empty answer for other types: the guest has IPv4 only),
// NXDOMAIN for every other name, SERVFAIL when the host cannot resolve an allowed name.
func (e *egress) answer(ctx context.Context, query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, fmt.Errorf("dns query: %w", err)
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil, fmt.Errorf("dns query: %w", err)
	}
	if h.Response || h.OpCode != 0 || len(qs) != 1 {
		return nil, errNotQuery
	}
	q := qs[0]
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true}
	var addrs []netip.Addr
	proxy := e.policy.Proxy && hostKey(q.Name.String()) == wire.PackageProxyHost
	switch {
	case q.Class != dnsmessage.ClassINET || !proxy && !e.policy.AllowsHost(q.Name.String()):
		rh.RCode = dnsmessage.RCodeNameError
	case q.Type == dnsmessage.TypeA && proxy:
		addrs = []netip.Addr{gatewayAddr}
	case q.Type == dnsmessage.TypeA:
		addrs, err = e.resolve(ctx, hostKey(q.Name.String()))
		if err != nil {
			rh.RCode = dnsmessage.RCodeServerFailure
		}
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, a := range addrs[:min(len(addrs), maxAnswers)] {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: uint32(nameTTL / time.Second)}
		if err := b.AResource(rr, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
