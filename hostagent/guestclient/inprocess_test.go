// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package guestclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/sshd"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/guestclient"
)

// sftpServerArg makes the test binary act as the guest's SFTP server process, as
// `waggle-init sftp-server` does in a VM.
const sftpServerArg = "waggle-test-sftp-server"

func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == sftpServerArg {
		wd, _ := os.Getwd()
		if err := sshd.ServeSFTP(os.Stdin, os.Stdout, wd); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// inProcessGuest is a guest SSH server on 127.0.0.1 in the test process.
type inProcessGuest struct {
	addr      string
	clientKey ssh.Signer
	hostKey   ssh.Signer
	home      string
	powerOffs chan struct{} // receives one value per power-off request
}

// startGuest runs the guest's SSH server in-process, as the test's own user unless mutate sets a
// credential, with a fresh home directory.
func startGuest(t testing.TB, mutate func(*sshd.Config)) *inProcessGuest {
	t.Helper()
	g := &inProcessGuest{clientKey: newSigner(t), hostKey: newSigner(t), home: t.TempDir(), powerOffs: make(chan struct{}, 8)}
	cfg := sshd.DefaultConfig()
	cfg.AuthorizedKey = g.clientKey.PublicKey()
	cfg.HostKey = g.hostKey
	cfg.Credential = nil
	cfg.Home = g.home
	if u, err := user.Current(); err == nil {
		cfg.UserName = u.Username
	}
	cfg.Path = os.Getenv("PATH")
	cfg.SFTPCommand = []string{os.Args[0], sftpServerArg}
	cfg.PowerOff = func() { g.powerOffs <- struct{}{} }
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := sshd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return g
}

// dial connects a client with key (the authorized one if nil).
func (g *inProcessGuest) dial(t testing.TB, key ssh.Signer) (*guestclient.Client, error) {
	t.Helper()
	if key == nil {
		key = g.clientKey
	}
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := guestclient.Dial(t.Context(), conn, key, guestclient.WithHostKey(g.hostKey.PublicKey()))
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (g *inProcessGuest) client(t testing.TB) *guestclient.Client {
	t.Helper()
	c, err := g.dial(t, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}

func TestInProcessGuest(t *testing.T) {
	g := startGuest(t, nil)
	c := g.client(t)
	for _, chk := range guestChecks() {
		t.Run(chk.name, func(t *testing.T) { chk.run(t, c, g.home) })
	}
}

func TestDialRefusesOtherKeys(t *testing.T) {
	g := startGuest(t, nil)
	if _, err := g.dial(t, newSigner(t)); err == nil {
		t.Fatal("a foreign client key was accepted")
	}
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := guestclient.Dial(t.Context(), conn, g.clientKey, guestclient.WithHostKey(newSigner(t).PublicKey())); err == nil {
		t.Fatal("a wrong host key was accepted")
	}
}

func TestClientAddrFilter(t *testing.T) {
	tests := []struct {
		name  string
		allow string
		ok    bool
	}{
		{"any peer", "", true},
		{"the host's address", "127.0.0.1", true},
		{"another address", "127.0.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGuest(t, func(c *sshd.Config) {
				if tt.allow != "" {
					c.ClientAddr = netip.MustParseAddr(tt.allow)
				}
			})
			_, err := g.dial(t, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("Dial: %v, want success %v", err, tt.ok)
			}
		})
	}
}

func TestPowerOff(t *testing.T) {
	g := startGuest(t, nil)
	c := g.client(t)
	if err := c.PowerOff(t.Context()); err != nil {
		t.Fatalf("PowerOff: %v", err)
	}
	select {
	case <-g.powerOffs:
	case <-time.After(5 * time.Second):
		t.Fatal("the power-off hook did not run")
	}
	if _, err := c.Exec(t.Context(), guestclient.ExecRequest{Command: "true"}); !errors.Is(err, guestclient.ErrClosed) {
		t.Fatalf("exec after power-off: %v, want ErrClosed", err)
	}
	if _, err := c.ReadFile(t.Context(), "x", 0); !errors.Is(err, guestclient.ErrClosed) {
		t.Fatalf("read after power-off: %v, want ErrClosed", err)
	}
}

func TestTooManySessions(t *testing.T) {
	g := startGuest(t, func(c *sshd.Config) { c.MaxSessions = 2 })
	c := g.client(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range 2 {
		wg.Go(func() {
			_, _ = c.Exec(ctx, guestclient.ExecRequest{Argv: []string{"sh", "-c", `: > "started-$1"; exec sleep 30`, "sh", strconv.Itoa(i)}})
		})
	}
	waitUntil(t, func() bool {
		_, err0 := os.Stat(filepath.Join(g.home, "started-0"))
		_, err1 := os.Stat(filepath.Join(g.home, "started-1"))
		return err0 == nil && err1 == nil
	})
	if _, err := c.Exec(t.Context(), guestclient.ExecRequest{Command: "true"}); !errors.Is(err, guestclient.ErrBusy) {
		t.Fatalf("third concurrent session: %v, want ErrBusy", err)
	}
	cancel()
	wg.Wait()
	// The guest frees the slots as it tears the sessions down.
	waitUntil(t, func() bool {
		_, err := c.Exec(t.Context(), guestclient.ExecRequest{Command: "true"})
		return err == nil
	})
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSandboxCredential runs commands and SFTP as uid/gid 1000, as the guest does.
func TestSandboxCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching credentials needs root")
	}
	// Everything the sandbox user touches must be reachable by it: a world-traversable scratch
	// directory holding a copy of the test binary (the SFTP server) and the home directory.
	base, err := os.MkdirTemp("", "waggle-cred-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	home := filepath.Join(base, "home")
	for _, err := range []error{os.Chmod(base, 0o755), os.Mkdir(home, 0o755), os.Chown(home, 1000, 1000)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(base, "sftp-server")
	copyFile(t, os.Args[0], exe)
	g := startGuest(t, func(c *sshd.Config) {
		c.Credential = &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}
		c.Home = home
		c.SFTPCommand = []string{exe, sftpServerArg}
	})
	c := g.client(t)
	res := mustExec(t, c, guestclient.ExecRequest{Command: "id -u; id -g; id -G; pwd"})
	if want := "1000\n1000\n1000\n" + home + "\n"; string(res.Stdout) != want {
		t.Fatalf("identity %q, want %q (stderr %q)", res.Stdout, want, res.Stderr)
	}
	if err := c.WriteFile(t.Context(), "owned.txt", []byte("x"), 0); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	fi, err := os.Stat(filepath.Join(home, "owned.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
		t.Fatalf("file written over SFTP owned by %d:%d, want 1000:1000", st.Uid, st.Gid)
	}
	if err := c.WriteFile(t.Context(), filepath.Join(base, "denied.txt"), []byte("x"), 0); !errors.Is(err, guestclient.ErrPermission) {
		t.Fatalf("write into a root-owned directory: %v, want ErrPermission", err)
	}
	if _, err := c.ReadFile(t.Context(), "/etc/shadow", 0); !errors.Is(err, guestclient.ErrPermission) && !errors.Is(err, guestclient.ErrNotFound) {
		t.Fatalf("read /etc/shadow: %v, want ErrPermission", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkExecTrueInProcess(b *testing.B) {
	g := startGuest(b, nil)
	benchExecTrue(b, g.client(b))
}

// directTracker starts commands itself, as the guest's privileged tracker does.
type directTracker struct{}

func (directTracker) Start(cmd *exec.Cmd) error { return cmd.Start() }
func (directTracker) Done(*exec.Cmd)            {}

// TestAptInstallRequest sends the guest's one privileged request: the installer runs with the
// checked names after "--", the request's stdin, and its own fixed environment (none of the
// session's variables); bad names and a guest without an installer are refused before anything
// runs.
func TestAptInstallRequest(t *testing.T) {
	dir := t.TempDir()
	installer := filepath.Join(dir, "installer")
	script := "#!/bin/sh\necho \"args: $*\"; echo \"lang: $LANG\"; echo \"dir: $(pwd)\"; echo \"stdin: $(cat)\"; touch " + dir + "/ran\n"
	if err := os.WriteFile(installer, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	g := startGuest(t, func(c *sshd.Config) {
		c.AptInstall, c.Privileged = []string{installer, "apt-install"}, directTracker{}
	})
	c := g.client(t)
	req := func(names ...string) guestclient.ExecResult {
		t.Helper()
		res, err := c.Exec(t.Context(), guestclient.ExecRequest{Argv: append([]string{wire.AptInstallCommand}, names...),
			Env: map[string]string{"LANG": "xx_XX"}, Stdin: []byte("KEYS")})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := req("curl", "g++")
	out := string(res.Stdout)
	for _, want := range []string{"args: apt-install -- curl g++", "lang: C.UTF-8", "dir: /", "stdin: KEYS"} {
		if res.ExitCode != 0 || !strings.Contains(out, want) {
			t.Errorf("installer output lacks %q (exit %d):\n%s%s", want, res.ExitCode, out, res.Stderr)
		}
	}
	os.Remove(filepath.Join(dir, "ran"))
	for _, names := range [][]string{{"-y"}, {"curl;id"}, {"../x"}, nil} {
		res := req(names...)
		if res.ExitCode != 2 || !strings.Contains(string(res.Stderr), "apt install refused") {
			t.Errorf("%q: exit %d %q, want 2 and a refusal", names, res.ExitCode, res.Stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the installer ran for refused names")
	}
	// A guest without an installer refuses the request.
	plain := startGuest(t, nil).client(t)
	res, err := plain.Exec(t.Context(), guestclient.ExecRequest{Argv: []string{wire.AptInstallCommand, "curl"}})
	if err != nil || res.ExitCode != 2 || !strings.Contains(string(res.Stderr), "no package installer") {
		t.Errorf("no installer: %+v, %v", res, err)
	}
}

// TestIdentify: an identity request makes the server present the new host key, accept only the
// new client key and drop the connections made before; a server without the hook, a bad
// request or a failing hook change nothing.
func TestIdentify(t *testing.T) {
	newHost := newSigner(t)
	var got []wire.Identity
	g := startGuest(t, func(c *sshd.Config) {
		c.IdentifyGrace = 100 * time.Millisecond
		c.Identify = func(id wire.Identity) (ssh.Signer, error) {
			got = append(got, id)
			if id.Hostname == "fail" {
				return nil, errors.New("no entropy today")
			}
			return newHost, nil
		}
	})
	other := g.client(t) // open before the identity change
	c := g.client(t)
	newClient := newSigner(t)
	id := wire.Identity{Hostname: "clone-1", AuthorizedKey: wire.MarshalKey(newClient.PublicKey()),
		Entropy: make([]byte, wire.MinEntropy), UnixNano: time.Now().UnixNano()}

	failing := id
	failing.Hostname = "fail"
	if _, err := c.Identify(t.Context(), failing); err == nil || !strings.Contains(err.Error(), "no entropy today") {
		t.Fatalf("failing hook: %v", err)
	}
	bad := id
	bad.Entropy = nil
	if _, err := c.Identify(t.Context(), bad); !errors.Is(err, wire.ErrBadIdentity) {
		t.Fatalf("bad request: %v, want ErrBadIdentity (refused before it is sent)", err)
	}
	if _, err := c.Exec(t.Context(), guestclient.ExecRequest{Command: "true"}); err != nil {
		t.Fatalf("exec after refused requests: %v", err)
	}

	hostKey, err := c.Identify(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if wire.MarshalKey(hostKey) != wire.MarshalKey(newHost.PublicKey()) || len(got) != 2 || got[1].Hostname != "clone-1" {
		t.Fatalf("host key %s, hook calls %+v", wire.MarshalKey(hostKey), got)
	}
	if _, err := other.Exec(t.Context(), guestclient.ExecRequest{Command: "true"}); err == nil {
		t.Error("older connection still served")
	}
	// The old client key is refused; the new one with the new host key works.
	if _, err := g.dial(t, nil); err == nil {
		t.Error("old client key accepted after the identity change")
	}
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := guestclient.Dial(t.Context(), conn, newClient, guestclient.WithHostKey(newHost.PublicKey()))
	if err != nil {
		t.Fatalf("new keys: %v", err)
	}
	defer nc.Close()
	if _, err := nc.Exec(t.Context(), guestclient.ExecRequest{Command: "true"}); err != nil {
		t.Errorf("exec with the new keys: %v", err)
	}
}

// TestIdentifyRefusedWithoutHook: a guest server that has no identity hook (as in a test or
// an older guest) refuses the request.
func TestIdentifyRefusedWithoutHook(t *testing.T) {
	g := startGuest(t, nil)
	c := g.client(t)
	id := wire.Identity{Hostname: "x", AuthorizedKey: wire.MarshalKey(newSigner(t).PublicKey()),
		Entropy: make([]byte, wire.MinEntropy), UnixNano: time.Now().UnixNano()}
	if _, err := c.Identify(t.Context(), id); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Identify: %v, want refused", err)
	}
	if _, err := c.Exec(t.Context(), guestclient.ExecRequest{Command: "true"}); err != nil {
		t.Errorf("exec after the refusal: %v", err)
	}
}
