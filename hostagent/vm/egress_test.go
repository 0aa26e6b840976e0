// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// countingListener listens on addr, answers each connection with a line, counts them in n and
// returns its address.
func countingListener(t *testing.T, addr string, n *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
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

// egressScript is a node program: an HTTPS GET of the npm registry, then TCP connections to
// the addresses in argv (each must fail) and a lookup of a name outside the policy. It prints
// one "name result" line per check.
const egressScript = `
const https = require("https"), net = require("net"), dns = require("dns");
const say = (...a) => console.log(a.join(" "));
https.get("https://registry.npmjs.org/is-number", {timeout: 60000}, r => {
  let b = ""; r.on("data", d => b += d);
  r.on("end", () => say("npm", r.statusCode, JSON.parse(b)["dist-tags"].latest));
}).on("error", e => say("npm", "error", e.code || e.message));
for (const target of process.argv.slice(1)) {
  const i = target.lastIndexOf(":");
  const s = net.connect({host: target.slice(0, i), port: +target.slice(i + 1), timeout: 10000});
  s.on("connect", () => { say("connect", target, "CONNECTED"); s.destroy(); });
  s.on("timeout", () => { say("connect", target, "TIMEOUT"); s.destroy(); });
  s.on("error", e => say("connect", target, e.code));
}
dns.lookup("example.com", {family: 4}, (e, a) => say("dns", "example.com", e ? e.code : a));
`

// TestGuestEgressPackages checks the "packages" policy with a node guest: it reaches the npm
// registry over HTTPS, but not the host's services (loopback or its own address), nor the
// cloud metadata address, and names outside the policy do not resolve. Each refused
// connection fails at once (the shim answers the SYN with a RST), and the shim logs it. PyPI
// is not reachable from our build machines, so pip is not tried here.
func TestGuestEgressPackages(t *testing.T) {
	m := vmtest.Manager(t)
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.Image(t, "node"), Egress: "packages"})
	var accepted atomic.Int32
	loop := countingListener(t, "127.0.0.1:0", &accepted)
	_, port, _ := net.SplitHostPort(loop)
	targets := []string{"192.168.127.1:" + port, "192.168.127.254:" + port, "10.0.2.2:" + port,
		"169.254.169.254:80", "100.100.100.200:80"}
	if ip := hostIP(); ip != "" {
		targets = append(targets, countingListener(t, net.JoinHostPort(ip, "0"), &accepted))
	}
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := guestclient.ExecRequest{Argv: append([]string{"node", "-e", egressScript}, targets...)}
	// This host may reach the internet through a TLS-inspecting proxy: give the guest the
	// host's trusted roots.
	if ca, err := os.ReadFile(hostCABundle()); err == nil {
		if err := c.WriteFile(testCtx(t, time.Minute), "/tmp/ca.pem", ca, 0o644); err != nil {
			t.Fatal(err)
		}
		req.Env = map[string]string{"NODE_EXTRA_CA_CERTS": "/tmp/ca.pem"}
	}
	start := time.Now()
	res, err := c.Exec(testCtx(t, 2*time.Minute), req)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	t.Logf("guest (%s):\n%s%s", time.Since(start).Round(time.Millisecond), out, res.Stderr)
	if !strings.Contains(out, "npm 200 ") {
		t.Errorf("the guest did not get https://registry.npmjs.org/is-number")
	}
	for _, target := range targets {
		// ECONNREFUSED from the shim's RST, not a timeout: the filter refused it. An address
		// of the guest's own subnet other than the gateway answers no ARP: EHOSTUNREACH.
		if !strings.Contains(out, "connect "+target+" ECONNREFUSED") && !strings.Contains(out, "connect "+target+" EHOSTUNREACH") {
			t.Errorf("connection to %s not refused by the filter", target)
		}
	}
	if !strings.Contains(out, "dns example.com ENOTFOUND") {
		t.Errorf("example.com resolved in the guest")
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("host listeners accepted %d connections from the guest", n)
	}
	if log, _ := os.ReadFile(filepath.Join(mach.Dir(), shim.ShimLog)); !strings.Contains(string(log), "refused guest connection") {
		t.Errorf("the shim logged no refused connection:\n%s", log)
	}
}

// TestGuestEgressAllowList checks an allow list against an address this host can reach: the
// npm registry's, which "allow:pypi.org" does not cover. The guest's connection to it is
// refused (by the filter: the host itself connects), and the registry's name does not
// resolve in the guest.
func TestGuestEgressAllowList(t *testing.T) {
	addrs, err := net.LookupHost("registry.npmjs.org")
	if err != nil {
		t.Skipf("this host cannot resolve registry.npmjs.org: %v", err)
	}
	var target string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip.To4() != nil {
			target = net.JoinHostPort(a, "80")
			break
		}
	}
	if target == "" {
		t.Skip("registry.npmjs.org has no IPv4 address here")
	}
	if hc, err := net.DialTimeout("tcp", target, 10*time.Second); err != nil {
		t.Skipf("this host cannot reach %s: %v", target, err)
	} else {
		hc.Close()
	}
	m := vmtest.Manager(t)
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.BusyboxImage(t), Egress: "allow:pypi.org"})
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, p, _ := net.SplitHostPort(target)
	res := exec1(t, c, "echo GET / | timeout 10 nc "+h+" "+p+"; echo nc rc=$?; "+
		"timeout 10 nslookup registry.npmjs.org 192.168.127.1; echo dns rc=$?")
	out := string(res.Stdout) + string(res.Stderr)
	if !strings.Contains(out, "nc rc=1") || !strings.Contains(out, "dns rc=1") {
		t.Errorf("want nc and nslookup to fail at once (rc=1, not 124 for a timeout):\n%s", out)
	}
	if log, _ := os.ReadFile(filepath.Join(mach.Dir(), shim.ShimLog)); !strings.Contains(string(log), "dst="+target) {
		t.Errorf("the shim did not log refusing %s:\n%s", target, log)
	}
}

// hostCABundle is the file of trusted roots this host uses.
func hostCABundle() string {
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		return f
	}
	return "/etc/ssl/certs/ca-certificates.crt"
}
