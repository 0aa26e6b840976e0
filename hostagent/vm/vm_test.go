// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func exec1(t *testing.T, c *guestclient.Client, command string) guestclient.ExecResult {
	t.Helper()
	res, err := c.Exec(testCtx(t, time.Minute), guestclient.ExecRequest{Command: command})
	if err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	return res
}

// processGone waits up to 2 s for pid to disappear (an exited shim is our child until the
// Manager's reaper collects it).
func processGone(pid int) bool {
	for range 40 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// vmFiles lists what is left in a state directory's vms/.
func vmFiles(t *testing.T, stateDir string) []string {
	entries, err := os.ReadDir(filepath.Join(stateDir, "vms"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestLaunchExecStop launches a VM, cold and from the template, runs a command and stops it.
func TestLaunchExecStop(t *testing.T) {
	for _, cold := range []bool{true, false} {
		t.Run(map[bool]string{true: "cold", false: "template"}[cold], func(t *testing.T) { testLaunchExecStop(t, cold) })
	}
}

func testLaunchExecStop(t *testing.T, cold bool) {
	var stateDir string
	m := vmtest.Manager(t, func(c *vm.Config) { stateDir = c.StateDir })
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ID: "exec-stop", ImagePath: vmtest.BusyboxImage(t), ColdBoot: cold})
	t.Logf("start took %s", mach.BootTime())
	// Searchable by QEMU's own uid when the test is root (QEMU never runs as root).
	wantDir := os.FileMode(0o700)
	if os.Geteuid() == 0 {
		wantDir = 0o711
	}
	if st, err := os.Stat(mach.Dir()); err != nil || st.Mode().Perm() != wantDir {
		t.Errorf("vm dir mode: %v %v, want %v", st, err, wantDir)
	}
	if st, err := os.Stat(filepath.Join(mach.Dir(), "id_ed25519")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v %v", st, err)
	}
	// Nobody else (QEMU's own uid included) may stop, renew or reach the VM through its shim.
	for _, sock := range []string{shim.ControlSock, shim.SSHSock} {
		if st, err := os.Stat(filepath.Join(mach.Dir(), sock)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode: %v %v, want 0600", sock, st, err)
		}
	}
	if mach.HostKey() == nil {
		t.Error("no host key announced")
	}
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := exec1(t, c, "id -u; hostname; echo err >&2; exit 3")
	if got := string(res.Stdout); got != "1000\nexec-stop\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 {
		t.Errorf("stdout %q stderr %q exit %d", got, res.Stderr, res.ExitCode)
	}

	st, err := shim.ReadState(mach.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := mach.Stop(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := mach.Stop(testCtx(t, time.Minute)); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if mach.IsAlive() {
		t.Error("IsAlive after Stop")
	}
	for name, pid := range map[string]int{"shim": st.ShimPID, "qemu": st.QEMUPID} {
		if !processGone(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	if left := vmFiles(t, stateDir); len(left) != 0 {
		t.Errorf("left in state dir after Stop: %v", left)
	}
}

// TestAdoptAfterLauncherExits launches two leased VMs from a child process that then exits
// (an agent killed for good), and finds them again with Scan in a fresh Manager (the
// restarted agent): the shims outlived their parent, the VMs are usable while their leases
// run; the one whose lease is not renewed stops by itself, the renewed one keeps running.
func TestAdoptAfterLauncherExits(t *testing.T) {
	var cfg vm.Config
	m := vmtest.Manager(t, func(c *vm.Config) { cfg = *c })
	image := vmtest.BusyboxImage(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLaunch$")
	cmd.Env = append(os.Environ(), "VMTEST_HELPER=1", "VMTEST_STATE="+cfg.StateDir, "VMTEST_CACHE="+cfg.CacheDir,
		"VMTEST_WAGGLE="+cfg.WaggleBinary, "VMTEST_INIT="+cfg.InitBinary, "VMTEST_IMAGE="+image)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("launcher: %v\n%s", err, out)
	}
	machines, err := m.Scan(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*vm.Machine{}
	for _, mach := range machines {
		byID[mach.ID()] = mach
	}
	mach, orphan := byID["adopted"], byID["orphan"]
	if len(machines) != 2 || mach == nil || orphan == nil {
		t.Fatalf("Scan found %d machines, want the ones called adopted and orphan", len(machines))
	}
	if !mach.IsAlive() || !orphan.IsAlive() {
		t.Fatal("adopted machine not alive")
	}
	orphanState, err := shim.ReadState(orphan.Dir())
	if err != nil {
		t.Fatal(err)
	}
	// The orphan's lease is cut to a second and never renewed again; the other one is renewed.
	ctx := testCtx(t, time.Minute)
	if err := orphan.Renew(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := mach.Renew(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"shim": orphanState.ShimPID, "qemu": orphanState.QEMUPID} {
		for start := time.Now(); !processGone(pid); {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("orphan's %s (pid %d) still running 20 s after its lease ran out", name, pid)
			}
		}
	}
	if err := orphan.Renew(ctx, time.Minute); err == nil {
		t.Error("renewing a VM that stopped itself succeeded")
	}
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res := exec1(t, c, "hostname"); string(res.Stdout) != "adopted\n" {
		t.Errorf("hostname %q", res.Stdout)
	}
	// The next Scan finds only the renewed VM and removes what the orphan left.
	again, err := m.Scan(testCtx(t, time.Minute))
	if err != nil || len(again) != 1 || again[0].ID() != "adopted" {
		t.Fatalf("second Scan: %d machines, %v", len(again), err)
	}
	if err := mach.Stop(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if left := vmFiles(t, cfg.StateDir); len(left) != 0 {
		t.Errorf("left after Stop: %v", left)
	}
}

// TestHelperLaunch is the launcher process of TestAdoptAfterLauncherExits.
func TestHelperLaunch(t *testing.T) {
	if os.Getenv("VMTEST_HELPER") != "1" {
		t.Skip("helper process only")
	}
	cfg := vm.DefaultConfig()
	cfg.StateDir, cfg.CacheDir = os.Getenv("VMTEST_STATE"), os.Getenv("VMTEST_CACHE")
	cfg.WaggleBinary, cfg.InitBinary = os.Getenv("VMTEST_WAGGLE"), os.Getenv("VMTEST_INIT")
	m, err := vm.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"adopted", "orphan"} {
		if _, err := m.Launch(testCtx(t, 3*time.Minute), vm.LaunchSpec{ID: id, ImagePath: os.Getenv("VMTEST_IMAGE"), Lease: 5 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	// Exit without stopping the VMs.
}

// TestGuestHasNoEgress checks that the guest reaches neither the host's loopback services nor
// other hosts nor even the package proxy, by TCP or DNS, while the host still reaches the
// guest.
func TestGuestHasNoEgress(t *testing.T) {
	var accepted atomic.Int32
	dir, err := os.MkdirTemp("", "wpp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	proxy := filepath.Join(dir, "packages.sock")
	countingListener(t, "unix:"+proxy, &accepted)
	m := vmtest.Manager(t, func(c *vm.Config) { c.PackageProxy = proxy })
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.BusyboxImage(t)})
	loop := countingListener(t, "127.0.0.1:0", &accepted)
	_, port, _ := net.SplitHostPort(loop)
	targets := []string{"192.168.127.1:" + port, "192.168.127.1:80", "192.168.127.254:" + port, "10.0.2.2:" + port, loop}
	if ip := hostIP(); ip != "" {
		targets = append(targets, countingListener(t, net.JoinHostPort(ip, "0"), &accepted))
	}
	if addrs, err := net.LookupHost("deb.debian.org"); err == nil && len(addrs) > 0 && net.ParseIP(addrs[0]).To4() != nil {
		targets = append(targets, addrs[0]+":80") // reachable from the host, so only the filter stops it
	}
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// All attempts run at once in the guest; a dropped SYN only ends at the timeout. With the
	// frame filter off, busybox nc reaches the last two targets and nslookup answers.
	var script strings.Builder
	for i, target := range targets {
		h, p, _ := net.SplitHostPort(target)
		fmt.Fprintf(&script, "(echo GET / | timeout 3 nc %s %s >/tmp/out.%d 2>&1; echo \"%s rc=$?\" >>/tmp/rc) &\n", h, p, i, target)
	}
	script.WriteString("(timeout 3 nslookup deb.debian.org 192.168.127.1 >/tmp/out.dns 2>&1; echo \"dns rc=$?\" >>/tmp/rc) &\n")
	script.WriteString("(timeout 3 nslookup packages.waggle.internal 192.168.127.1 >/tmp/out.pdns 2>&1; echo \"proxy-dns rc=$?\" >>/tmp/rc) &\n")
	script.WriteString("wait; cat /tmp/rc; grep -l . /tmp/out.* >/dev/null && grep -H -e Address -e HTTP /tmp/out.*; true")
	res := exec1(t, c, script.String())
	lines := strings.Fields(string(res.Stdout))
	for _, l := range lines {
		if strings.HasSuffix(l, "rc=0") || strings.Contains(l, "/tmp/out.") {
			t.Errorf("guest reached something: %s", l)
		}
	}
	if n := strings.Count(string(res.Stdout), " rc="); n != len(targets)+2 {
		t.Errorf("%d results, want %d:\n%s", n, len(targets)+2, res.Stdout)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("host listeners accepted %d connections from the guest", n)
	}
}

// hostIP returns a non-loopback IPv4 address of this host, or "".
func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

// TestSilentBootIsRetried makes the watchdog fire on every attempt (a silence limit shorter
// than any boot) of a cold boot: Launch must fail after the retry and leave nothing behind.
func TestSilentBootIsRetried(t *testing.T) {
	var stateDir string
	m := vmtest.Manager(t, func(c *vm.Config) {
		stateDir = c.StateDir
		c.SilenceTimeout, c.SilenceCPU, c.BootAttempts = 200*time.Millisecond, 0, 2
	})
	_, err := m.Launch(testCtx(t, time.Minute), vm.LaunchSpec{ImagePath: vmtest.BusyboxImage(t), ColdBoot: true})
	if err == nil || !strings.Contains(err.Error(), "attempt 2") || !strings.Contains(err.Error(), "silent") {
		t.Fatalf("Launch: %v, want a silent boot after 2 attempts", err)
	}
	if left := vmFiles(t, stateDir); len(left) != 0 {
		t.Errorf("left after failed launch: %v", left)
	}
}

func TestLaunchRejectsBadInput(t *testing.T) {
	m := vmtest.Manager(t)
	ctx := testCtx(t, time.Minute)
	tests := []struct {
		name string
		spec vm.LaunchSpec
		want string
	}{
		{"bad id", vm.LaunchSpec{ID: "../x", ImagePath: vmtest.BusyboxImage(t)}, "bad id"},
		{"missing image", vm.LaunchSpec{ImagePath: "/nonexistent.ext4"}, "disk"},
		{"negative lease", vm.LaunchSpec{ID: "neg", ImagePath: vmtest.BusyboxImage(t), Lease: -time.Second}, "lease -1s out of range"},
		{"lease over the max", vm.LaunchSpec{ID: "long", ImagePath: vmtest.BusyboxImage(t), Lease: 25 * time.Hour}, "lease 25h0m0s out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Launch(ctx, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := vm.NewManager(vm.Config{}); err == nil {
		t.Error("NewManager without paths: want error")
	}
	if _, err := m.Launch(ctx, vm.LaunchSpec{ID: "dup", ImagePath: vmtest.BusyboxImage(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Launch(ctx, vm.LaunchSpec{ID: "dup", ImagePath: vmtest.BusyboxImage(t)}); !errors.Is(err, os.ErrExist) {
		t.Errorf("second launch with the same id: %v, want ErrExist", err)
	}
}

// TestQEMUUser runs QEMU as the unprivileged user nobody (when this test runs as root): QEMU
// owns its disk and run directory, the shim keeps the VM directory and the key.
func TestQEMUUser(t *testing.T) {
	u, err := user.Lookup("nobody")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and the user nobody")
	}
	m := vmtest.Manager(t, func(c *vm.Config) { c.QEMUUser = "nobody" })
	mach := vmtest.Launch(t, m, vm.LaunchSpec{ImagePath: vmtest.BusyboxImage(t)})
	st, err := shim.ReadState(mach.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o711 | os.ModeDir, "disk.qcow2": 0o600, "id_ed25519": 0o600, "qemu": 0o700 | os.ModeDir} {
		fi, err := os.Stat(filepath.Join(mach.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		owner := fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid)
		wantOwner := u.Uid
		if name == "." || name == "id_ed25519" {
			wantOwner = "0"
		}
		if fi.Mode() != want || owner != wantOwner {
			t.Errorf("%s: mode %v owner %s, want %v %s", name, fi.Mode(), owner, want, wantOwner)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.QEMUPID))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if uids, ok := strings.CutPrefix(line, "Uid:"); ok {
			for _, id := range strings.Fields(uids) {
				if id != u.Uid {
					t.Errorf("qemu uids %q, want all %s", strings.TrimSpace(uids), u.Uid)
					break
				}
			}
		}
	}
	c, err := mach.Connect(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res := exec1(t, c, "echo ok"); string(res.Stdout) != "ok\n" {
		t.Errorf("exec: %q", res.Stdout)
	}
}
