// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy/pkgtest"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
)

// countingListener listens on addr (host:port, or unix:PATH), answers each connection with a line, counts them in n and
// returns its address.
func countingListener(t *testing.T, addr string, n *atomic.Int32) string {
	t.Helper()
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			// The count is what tests check; a client that already hung up misses only the line.
			_, _ = c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhello\n"))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// proxyFixture is a package proxy serving the test upstreams on a unix socket, as a host
// agent serves it; Socket goes into vm.Config.PackageProxy.
type proxyFixture struct {
	Socket string
	Up     *pkgtest.Upstreams
}

// startPackageProxy starts the test upstreams on addr and a package proxy in front of them.
func startPackageProxy(t *testing.T, addr string) proxyFixture {
	t.Helper()
	up := pkgtest.Start(t, pkgtest.Options{Addr: addr})
	_, socket := pkgtest.Serve(t, up.Config())
	return proxyFixture{Socket: socket, Up: up}
}

// publicHostIP is an address of this host outside the ranges a guest may never reach (this
// machine's own address is one), or "" if it has none.
func publicHostIP() string {
	if ip := hostIP(); ip != "" && !vnet.Refused(netip.MustParseAddr(ip)) {
		return ip
	}
	return ""
}

// egressScript is a node program: it fetches an npm package document and its tarball through
// the package proxy, then opens TCP connections to the addresses in argv (each must fail) and
// looks up names outside the policy. It prints one "name result" line per check.
const egressScript = `
const http = require("http"), net = require("net"), dns = require("dns");
const say = (...a) => console.log(a.join(" "));
const get = (url, then) => http.get(url, {timeout: 60000}, r => {
  const b = []; r.on("data", d => b.push(d));
  r.on("end", () => then(r.statusCode, Buffer.concat(b)));
}).on("error", e => say("proxy", "error", e.code || e.message));
get("http://packages.waggle.internal/npm/waggle-hello", (code, doc) => {
  say("proxy document", code);
  const tarball = JSON.parse(doc).versions["1.0.0"].dist.tarball;
  get(tarball, (code, body) => say("proxy tarball", code, body.length));
});
for (const target of process.argv.slice(1)) {
  const i = target.lastIndexOf(":");
  const s = net.connect({host: target.slice(0, i), port: +target.slice(i + 1), timeout: 10000});
  s.on("connect", () => { say("connect", target, "CONNECTED"); s.destroy(); });
  s.on("timeout", () => { say("connect", target, "TIMEOUT"); s.destroy(); });
  s.on("error", e => say("connect", target, e.code));
}
for (const name of ["example.com", "registry.npmjs.org", "pypi.org"]) {
  dns.lookup(name, {family: 4}, (e, a) => say("dns", name, e ? e.code : a));
}
`

// TestGuestEgressPackages checks the "packages" policy with a node guest: it reaches the
// package proxy, and nothing else: not the upstream the proxy fetches from, nor a listener on
// the same public-looking address, nor the host's services (loopback or the gateway's other
// ports), nor the cloud metadata address; the package indexes' own names do not resolve. Each
// refused connection fails at once (the shim answers the SYN with a RST), and the shim logs it.
func TestGuestEgressPackages(t *testing.T) {
	addr := "127.0.0.1:0"
	if ip := publicHostIP(); ip != "" {
		addr = net.JoinHostPort(ip, "0")
	} else {
		t.Logf("this host has no public-looking address: the upstream listens on loopback")
	}
	px := startPackageProxy(t, addr)
	m := vmtest.Manager(t, func(c *vm.Config) { c.PackageProxy = px.Socket })
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.Image(t, "node"), Egress: "packages"})
	var accepted atomic.Int32
	loop := countingListener(t, "127.0.0.1:0", &accepted)
	_, port, _ := net.SplitHostPort(loop)
	targets := []string{px.Up.Addr, "192.168.127.1:" + port, "192.168.127.1:443", "192.168.127.254:" + port,
		"10.0.2.2:" + port, "169.254.169.254:80", "100.100.100.200:80"}
	if ip := hostIP(); ip != "" {
		targets = append(targets, countingListener(t, net.JoinHostPort(ip, "0"), &accepted))
	}
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	res, err := c.Exec(testCtx(t, 2*time.Minute), guestclient.ExecRequest{Argv: append([]string{"node", "-e", egressScript}, targets...)})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	t.Logf("guest (%s):\n%s%s", time.Since(start).Round(time.Millisecond), out, res.Stderr)
	if !strings.Contains(out, "proxy document 200") || !strings.Contains(out, fmt.Sprintf("proxy tarball 200 %d", len(px.Up.Tarball))) {
		t.Errorf("the guest did not get the package through the proxy")
	}
	for _, target := range targets {
		// ECONNREFUSED from the shim's RST, not a timeout: the filter refused it. An address
		// of the guest's own subnet other than the gateway answers no ARP: EHOSTUNREACH.
		if !strings.Contains(out, "connect "+target+" ECONNREFUSED") && !strings.Contains(out, "connect "+target+" EHOSTUNREACH") {
			t.Errorf("connection to %s not refused by the filter", target)
		}
	}
	for _, name := range []string{"example.com", "registry.npmjs.org", "pypi.org"} {
		if !strings.Contains(out, "dns "+name+" ENOTFOUND") {
			t.Errorf("%s resolved in the guest", name)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("host listeners accepted %d connections from the guest", n)
	}
	if n := px.Up.Hits(pkgtest.TarballPath); n != 1 {
		t.Errorf("the upstream served the tarball %d times, want 1 (to the proxy)", n)
	}
	if log, _ := os.ReadFile(filepath.Join(mach.Dir(), shim.ShimLog)); !strings.Contains(string(log), "refused guest connection") {
		t.Errorf("the shim logged no refused connection:\n%s", log)
	}
}

// TestGuestEgressAllowList checks an allow list with a listener on a public-looking address of
// this host, on port 443: the guest reaches it (so the refusals of the packages test are the
// filter's, not the network's), but not the same address on another port, while the package
// proxy stays reachable and names outside the list do not resolve.
func TestGuestEgressAllowList(t *testing.T) {
	ip := publicHostIP()
	if ip == "" {
		t.Skip("this host has no public-looking address to allow")
	}
	var accepted, other atomic.Int32
	if ln, err := net.Listen("tcp", net.JoinHostPort(ip, "443")); err != nil {
		t.Skipf("port 443 of %s is taken: %v", ip, err)
	} else {
		ln.Close()
	}
	countingListener(t, net.JoinHostPort(ip, "443"), &accepted)
	refused := countingListener(t, net.JoinHostPort(ip, "0"), &other)
	px := startPackageProxy(t, "127.0.0.1:0")
	m := vmtest.Manager(t, func(c *vm.Config) { c.PackageProxy = px.Socket })
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.BusyboxImage(t), Egress: "allow:" + ip})
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, rport, _ := net.SplitHostPort(refused)
	res := exec1(t, c, "echo GET / | timeout 10 nc "+ip+" 443; echo allowed rc=$?; "+
		"echo GET / | timeout 10 nc "+ip+" "+rport+"; echo refused rc=$?; "+
		"printf 'GET /npm/waggle-hello HTTP/1.0\r\n\r\n' | timeout 10 nc 192.168.127.1 80 | head -1; "+
		"timeout 10 nslookup registry.npmjs.org 192.168.127.1; echo dns rc=$?; "+
		"timeout 10 nslookup packages.waggle.internal 192.168.127.1 | grep -c 192.168.127.1; echo proxy-dns rc=$?")
	out := string(res.Stdout) + string(res.Stderr)
	for _, want := range []string{"hello", "allowed rc=0", "refused rc=1", "HTTP/1.0 200 OK", "dns rc=1", "proxy-dns rc=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest output lacks %q:\n%s", want, out)
		}
	}
	if accepted.Load() != 1 || other.Load() != 0 {
		t.Errorf("the allowed listener accepted %d connections (want 1), the other %d (want 0)", accepted.Load(), other.Load())
	}
	if log, _ := os.ReadFile(filepath.Join(mach.Dir(), shim.ShimLog)); !strings.Contains(string(log), "dst="+refused) {
		t.Errorf("the shim did not log refusing %s:\n%s", refused, log)
	}
}
