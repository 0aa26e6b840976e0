// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/initramfs"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// control sends one request on dir/control.sock and decodes the reply.
func control(t *testing.T, dir, op string) shim.Response {
	t.Helper()
	return controlLine(t, dir, `{"op":"`+op+`"}`)
}

// controlLine sends one request line on dir/control.sock and decodes the reply.
func controlLine(t *testing.T, dir, line string) shim.Response {
	t.Helper()
	conn, err := net.Dial("unix", filepath.Join(dir, shim.ControlSock))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	var resp shim.Response
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return resp
}

// shimDir is a new VM directory, removed when the test ends.
func shimDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wsh") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serve runs Serve on dir with spec in the test process; the channel gets its result.
func serve(t *testing.T, ctx context.Context, dir string, spec shim.Spec) chan error {
	t.Helper()
	if err := shim.WriteSpec(dir, spec); err != nil {
		t.Fatal(err)
	}
	ctl, err := net.Listen("unix", filepath.Join(dir, shim.ControlSock))
	if err != nil {
		t.Fatal(err)
	}
	sshLn, err := net.Listen("unix", filepath.Join(dir, shim.SSHSock))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- shim.Serve(ctx, dir, shim.Inherited{Control: ctl, SSH: sshLn}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	return served
}

// TestLeaseEndsShim: a shim nobody renews stops by itself once its lease runs out, here one
// whose VM could not start (it would otherwise wait for a stop for ever); renewing keeps it.
func TestLeaseEndsShim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const lease = 500 * time.Millisecond
	dir := shimDir(t)
	served := serve(t, ctx, dir, shim.Spec{QEMUBinary: "/nonexistent/qemu-system-x86_64", BootTimeout: time.Second, Attempts: 1, Lease: lease})
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Logf("shim after the test: %v", err)
		}
	})
	if resp := control(t, dir, shim.OpWait); resp.State.Phase != shim.PhaseFailed || resp.State.LeaseEnds.IsZero() {
		t.Fatalf("wait: %+v", resp)
	}
	for _, bad := range []string{`{"op":"renew","lease":-5}`, `{"op":"status","lease":5}`} {
		if resp := controlLine(t, dir, bad); !strings.Contains(resp.Error, "bad control request") {
			t.Errorf("%s: %+v, want a bad request", bad, resp)
		}
	}
	renewed := time.Now()
	for time.Since(renewed) < 3*lease {
		resp := control(t, dir, shim.OpRenew)
		if resp.Error != "" || !resp.State.LeaseEnds.After(time.Now()) {
			t.Fatalf("renew: %+v", resp)
		}
		select {
		case err := <-served:
			served <- err
			t.Fatalf("Serve returned while renewed: %v", err)
		case <-time.After(lease / 5):
		}
	}
	select {
	case err := <-served:
		served <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not stop after its lease ran out")
	}
	if _, err := os.Stat(filepath.Join(dir, shim.NetSock)); !os.IsNotExist(err) {
		t.Errorf("net.sock left: %v", err)
	}
}

// TestServeInProcess runs the shim's Serve in the test process (so the race detector sees
// it) with a real QEMU and guest: boot, the control protocol, the SSH stream, and stop.
func TestServeInProcess(t *testing.T) {
	bins := vmtest.Build(t)
	k := vmtest.Kernel(t)
	image := vmtest.BusyboxImage(t)
	qemuID := 0 // QEMU never runs as root: a root test runs it as nobody
	if cred := vmtest.QEMUCredential(); cred != nil {
		qemuID = int(cred.Uid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	initrd, err := initramfs.Build(ctx, vmtest.CacheDir(t), bins.Init, k.Modules)
	if err != nil {
		t.Fatal(err)
	}
	dir := shimDir(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	sshPub, _ := ssh.NewPublicKey(pub)
	params := wire.DefaultBootParams()
	params.AuthorizedKey, params.Hostname = sshPub, "inproc"
	cmdline, err := params.Cmdline()
	if err != nil {
		t.Fatal(err)
	}
	spec := shim.Spec{
		Backend: "qemu",
		VM: hypervisor.Spec{Name: "inproc", Kernel: k.Vmlinux, Initrd: initrd, Disk: filepath.Join(dir, "disk.qcow2"),
			Backing: []string{image}, CPUs: 1, MemoryMiB: 256, UID: qemuID, GID: qemuID, Accel: "tcg", TSCKHz: qemu.HostTSCKHz(), Cmdline: cmdline},
		QEMUBinary:     "qemu-system-x86_64",
		SilenceTimeout: 30 * time.Second, SilenceCPU: 6 * time.Second, BootTimeout: time.Minute, Attempts: 2,
	}
	served := serve(t, ctx, dir, spec)
	t.Cleanup(func() {
		cancel()
		// After an earlier failure, the error of a run cut short says nothing new.
		if err := <-served; err != nil && !t.Failed() {
			t.Errorf("Serve: %v", err)
		}
	})

	if resp := control(t, dir, "bogus"); !strings.Contains(resp.Error, "unknown op") {
		t.Errorf("bogus op: %+v", resp)
	}
	resp := control(t, dir, shim.OpWait)
	if resp.Error != "" || resp.State.Phase != shim.PhaseReady || resp.State.HostKey == "" || resp.State.QEMUPID == 0 {
		t.Fatalf("wait: %+v", resp)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.State.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	// Two SSH streams at once through the relay.
	for range 2 {
		conn, err := net.Dial("unix", filepath.Join(dir, shim.SSHSock))
		if err != nil {
			t.Fatal(err)
		}
		c, err := guestclient.Dial(ctx, conn, signer, guestclient.WithHostKey(hostKey))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		res, err := c.Exec(ctx, guestclient.ExecRequest{Command: "hostname"})
		if err != nil || string(res.Stdout) != "inproc\n" {
			t.Errorf("hostname: %q %v", res.Stdout, err)
		}
	}
	if st, err := shim.ReadState(dir); err != nil || st.Phase != shim.PhaseReady {
		t.Errorf("state file: %+v %v", st, err)
	}
	if resp := control(t, dir, shim.OpStop); resp.State.Phase != shim.PhaseStopped {
		t.Errorf("stop: %+v", resp)
	}
	select {
	case err := <-served:
		served <- err // for the cleanup
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after stop")
	}
	if _, err := os.Stat(filepath.Join(dir, shim.NetSock)); !os.IsNotExist(err) {
		t.Errorf("net.sock left: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(resp.State.QEMUPID))); !os.IsNotExist(err) {
		t.Errorf("qemu %d still running", resp.State.QEMUPID)
	}
}
