// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package guestclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// bootGuest boots a VM with vmtest's busybox image and connects to it.
func bootGuest(t testing.TB) (*vm.Machine, *guestclient.Client) {
	t.Helper()
	vmtest.Require(t)
	m := vmtest.Manager(t)
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.BusyboxImage(t)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := mach.Connect(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return mach, c
}

// TestVMGuest runs the checks of TestInProcessGuest against the real guest init in a VM, plus
// what only a real guest has: the sandbox identity and its lockdown.
func TestVMGuest(t *testing.T) {
	mach, c := bootGuest(t)
	const dir = "/tmp/waggle-checks"
	mustExec(t, c, guestclient.ExecRequest{Argv: []string{"mkdir", "-p", dir}})
	for _, chk := range guestChecks() {
		t.Run(chk.name, func(t *testing.T) { chk.run(t, c, dir) })
	}
	t.Run("SandboxLockdown", func(t *testing.T) {
		res := mustExec(t, c, guestclient.ExecRequest{Command: "id -u; id -g; hostname; pwd; cat /proc/self/status /proc/sys/kernel/kptr_restrict"})
		out := string(res.Stdout)
		for _, want := range []string{"1000\n1000\n" + mach.ID() + "\n/home/sandbox\n", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "\n2\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("guest output lacks %q:\n%s", want, out)
			}
		}
		// The guest's own processes cannot reach its SSH server (and so cannot take the host's
		// connection slots): it closes them before sending its banner.
		for _, addr := range []string{"127.0.0.1", "192.168.127.2"} {
			res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"sh", "-c", `sleep 1 | nc -w 2 "$1" 22`, "sh", addr}})
			if strings.Contains(string(res.Stdout), "SSH-") {
				t.Errorf("guest process reached the SSH server at %s: %q", addr, res.Stdout)
			}
		}
		if res := mustExec(t, c, guestclient.ExecRequest{Command: "ulimit -u"}); string(res.Stdout) != "4096\n" {
			t.Errorf("process limit %q, want 4096", res.Stdout)
		}
		if err := c.WriteFile(t.Context(), "/etc/waggle-denied", []byte("x"), 0); !errors.Is(err, guestclient.ErrPermission) {
			t.Errorf("write /etc as sandbox: %v, want ErrPermission", err)
		}
	})
	t.Run("OrphansReaped", func(t *testing.T) {
		// The sleeps outlive their shell, are re-parented to PID 1 and killed with the session's
		// process group: PID 1 must reap them.
		mustExec(t, c, guestclient.ExecRequest{Command: "for i in 1 2 3 4 5; do sleep 1 >/dev/null 2>&1 & done; echo started"})
		zombies := `for f in /proc/[0-9]*/stat; do read -r s 2>/dev/null < $f || continue; case "$s" in *") Z "*) echo "$s";; esac; done`
		deadline := time.Now().Add(10 * time.Second)
		for {
			res := mustExec(t, c, guestclient.ExecRequest{Command: zombies})
			if len(res.Stdout) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("zombies left:\n%s", res.Stdout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("PowerOff", func(t *testing.T) {
		if err := c.PowerOff(t.Context()); err != nil {
			t.Fatalf("PowerOff: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for mach.IsAlive() {
			if time.Now().After(deadline) {
				t.Fatal("VM still alive 30 s after power-off")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// BenchmarkExecTrueVM measures the exec round trip of `true` on a ready VM; run it with
// -benchtime=100x for p50/p99 over 100 calls.
func BenchmarkExecTrueVM(b *testing.B) {
	_, c := bootGuest(b)
	benchExecTrue(b, c)
}
