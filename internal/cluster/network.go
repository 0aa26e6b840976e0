// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
)

// The partition helper. Processes on 127.0.0.x cannot be reached from another network
// namespace (loopback is per namespace), so a cluster with isolated host agents lives on a
// private /24 of its own instead: a Linux bridge in the machine's namespace holds the
// addresses of every process that runs there, and each isolated host agent runs in a network
// namespace of its own whose end of a veth pair (with the agent's address) is a port of that
// bridge. Cutting a host off takes the bridge's end of its veth down: the agent reaches nothing
// and nothing reaches it, while the others keep talking among themselves (their addresses
// are on the bridge, which stays up). Healing brings it up again. It needs root and iproute2.

// Network is the private network of a cluster with isolated host agents; cluster.json keeps
// it so that another waggle can cut, heal and remove it.
type Network struct {
	Bridge string `json:"bridge"`
	// Prefix is the /24 without its last byte: "10.213.7".
	Prefix string `json:"prefix"`
	// Isolated are the isolated host agents by host id.
	Isolated map[string]Isolated `json:"isolated"`
}

// Isolated is one isolated host agent's namespace and veth pair.
type Isolated struct {
	Netns string `json:"netns"`
	// Outer is the veth end on the bridge (taken down to cut the host off), Inner the end in
	// the namespace.
	Outer string `json:"veth_outer"`
	Inner string `json:"veth_inner"`
	IP    string `json:"ip"`
}

// netnsPath is where `ip netns` keeps a named namespace.
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// newNetwork names the network of the cluster in dir: names derived from dir (so one machine
// runs several clusters) and a /24 in 10.200.0.0/13 that no interface uses yet.
func newNetwork(dir string) (*Network, error) {
	sum := sha256.Sum256([]byte(dir))
	id := hex.EncodeToString(sum[:3])
	used, err := usedPrefixes()
	if err != nil {
		return nil, err
	}
	for i := range 256 {
		prefix := fmt.Sprintf("10.%d.%d", 200+int(sum[3]+byte(i>>5))%8, sum[4]+byte(i))
		if !used[prefix] {
			return &Network{Bridge: "wgl" + id, Prefix: prefix, Isolated: map[string]Isolated{}}, nil
		}
	}
	return nil, errors.New("no free /24 in 10.200.0.0/13 for the cluster's network")
}

// usedPrefixes are the /24s of the machine's IPv4 addresses.
func usedPrefixes() (map[string]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	used := map[string]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip4 := ipn.IP.To4(); ip4 != nil {
				used[fmt.Sprintf("%d.%d.%d", ip4[0], ip4[1], ip4[2])] = true
			}
		}
	}
	return used, nil
}

// ip is the address with last byte n in the network.
func (n *Network) ip(last int) string { return fmt.Sprintf("%s.%d", n.Prefix, last) }

// isolate names the namespace and veth pair of host agent number idx with address ip.
func (n *Network) isolate(host string, idx int, ip string) {
	base := strings.TrimPrefix(n.Bridge, "wgl")
	n.Isolated[host] = Isolated{Netns: "waggle-" + base + "-" + host,
		Outer: fmt.Sprintf("wgl%so%d", base, idx), Inner: fmt.Sprintf("wgl%si%d", base, idx), IP: ip}
}

// create makes the bridge with addrs (the addresses of the processes outside namespaces) and
// every isolated host's namespace and veth pair; leftovers of an earlier run are removed first.
func (n *Network) create(addrs []string) error {
	n.remove()
	cmds := [][]string{
		{"link", "add", n.Bridge, "type", "bridge"},
		{"link", "set", n.Bridge, "up"},
	}
	for _, a := range addrs {
		cmds = append(cmds, []string{"addr", "add", a + "/24", "dev", n.Bridge})
	}
	for _, iso := range n.Isolated {
		cmds = append(cmds,
			[]string{"netns", "add", iso.Netns},
			[]string{"link", "add", iso.Outer, "type", "veth", "peer", "name", iso.Inner},
			[]string{"link", "set", iso.Outer, "master", n.Bridge, "up"},
			[]string{"link", "set", iso.Inner, "netns", iso.Netns},
			[]string{"-n", iso.Netns, "addr", "add", iso.IP + "/24", "dev", iso.Inner},
			[]string{"-n", iso.Netns, "link", "set", iso.Inner, "up"},
			[]string{"-n", iso.Netns, "link", "set", "lo", "up"},
		)
	}
	for _, c := range cmds {
		if err := ipCmd(c...); err != nil {
			n.remove()
			return fmt.Errorf("set up the cluster's network: %w", err)
		}
	}
	return nil
}

// remove deletes the namespaces (with their veth pairs) and the bridge; what is not there is
// skipped.
func (n *Network) remove() {
	for _, iso := range n.Isolated {
		_ = ipCmd("netns", "delete", iso.Netns)
		_ = ipCmd("link", "delete", iso.Outer)
	}
	_ = ipCmd("link", "delete", n.Bridge)
}

// ErrNotIsolated means a host agent runs in the machine's own network namespace.
var ErrNotIsolated = errors.New("not isolated")

// setLink cuts host off (up false) or heals it (up true).
func (n *Network) setLink(host string, up bool) error {
	iso, ok := n.Isolated[host]
	if !ok {
		return fmt.Errorf("host %s: %w: only hosts started in a namespace of their own can be cut off (waggle cluster up --netns-hosts)", host, ErrNotIsolated)
	}
	state := "down"
	if up {
		state = "up"
	}
	return ipCmd("link", "set", iso.Outer, state)
}

// ipCmd runs `ip args...`.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
