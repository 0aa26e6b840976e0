// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package vmtest gives tests real microVMs: Require skips a test (or fails it when
// WAGGLE_REQUIRE_VM=1) on hosts that cannot boot them, and Manager, Launch and Image build
// waggle and waggle-init, fetch the kernel and find a guest image, all cached across runs.
package vmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/kernel"
	"github.com/waggle-dev/waggle/images"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

// RequireEnv, when "1", turns every skip of this package into a failure.
const RequireEnv = "WAGGLE_REQUIRE_VM"

// CacheDirEnv overrides the cache directory tests share (kernel, initramfs, images, binaries).
const CacheDirEnv = "WAGGLE_TEST_CACHE_DIR"

// skip skips t, or fails it when RequireEnv is set.
func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (and %s=1)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// Require skips the test unless this host can boot VMs: QEMU, qemu-img, the Go toolchain and
// the tools that fetch the kernel are needed.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() && os.Getenv(RequireEnv) != "1" {
		t.Skip("VM tests do not run with -short")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "go", "apt-get", "dpkg-deb", "depmod", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip(t, "VM test needs %s: %v", tool, err)
		}
	}
}

// CacheDir is the cache directory tests share: $WAGGLE_TEST_CACHE_DIR, else the cache of
// $WAGGLE_DATA_DIR, else /var/lib/waggle/cache (where `waggle images build` puts images).
func CacheDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(CacheDirEnv)
	if dir == "" {
		data := os.Getenv("WAGGLE_DATA_DIR")
		if data == "" {
			data = "/var/lib/waggle"
		}
		dir = filepath.Join(data, "cache")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		skip(t, "no usable cache directory %s: %v", dir, err)
	}
	return dir
}

// Binaries are the programs a Manager needs.
type Binaries struct {
	Waggle, Init string
}

// shared is built once per test process (go build is cached, so later processes are quick).
var shared struct {
	once sync.Once
	bin  Binaries
	err  error
}

// Build builds cmd/waggle and the static cmd/waggle-init into CacheDir/bin/<checkout> once per test
// process.
func Build(t testing.TB) Binaries {
	t.Helper()
	Require(t)
	shared.once.Do(func() { shared.bin, shared.err = build(CacheDir(t)) })
	if shared.err != nil {
		t.Fatalf("vmtest: %v", shared.err)
	}
	return shared.bin
}

func build(cache string) (Binaries, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	// One directory per checkout: tests of other worktrees sharing the cache must not replace
	// the binaries a test (re)starts processes from.
	sum := sha256.Sum256([]byte(root))
	binDir := filepath.Join(cache, "bin", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return Binaries{}, err
	}
	b := Binaries{Waggle: filepath.Join(binDir, "waggle"), Init: filepath.Join(binDir, "waggle-init")}
	for _, target := range []struct{ out, pkg string }{{b.Waggle, "./cmd/waggle"}, {b.Init, "./cmd/waggle-init"}} {
		// Build beside the target and rename, so running shims keep their (old) binary.
		tmp := target.out + fmt.Sprintf(".%d.tmp", os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, target.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp)
			return Binaries{}, fmt.Errorf("go build %s: %w\n%s", target.pkg, err, out)
		}
		if err := os.Rename(tmp, target.out); err != nil {
			return Binaries{}, err
		}
	}
	return b, nil
}

// Kernel fetches (once, then from the cache) the guest kernel; it skips the test when it
// cannot be fetched.
func Kernel(t testing.TB) *kernel.Kernel {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := kernel.Fetch(ctx, kernel.DefaultConfig(CacheDir(t)))
	if err != nil {
		skip(t, "guest kernel unavailable: %v", err)
	}
	return k
}

// Manager returns a Manager with a fresh state directory and the shared cache; mutate may
// change its Config. Every VM left in the state directory is stopped when the test ends.
func Manager(t testing.TB, mutate ...func(*vm.Config)) *vm.Manager {
	t.Helper()
	bins := Build(t)
	Kernel(t)
	cfg := vm.DefaultConfig()
	cfg.CacheDir = CacheDir(t)
	cfg.WaggleBinary, cfg.InitBinary = bins.Waggle, bins.Init
	cfg.Logger = testLogger(t)
	cfg.StateDir = stateDir(t, cfg)
	for _, f := range mutate {
		f(&cfg)
	}
	m, err := vm.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		machines, _ := m.Scan(ctx)
		for _, mach := range machines {
			if err := mach.Stop(ctx); err != nil {
				t.Errorf("stop leftover vm %s: %v", mach.ID(), err)
			}
		}
	})
	return m
}

// stateDirPrefix names the state directories of test Managers in os.TempDir.
const stateDirPrefix = "wvm"

// ownerFile in an owned directory holds the pid of the test process that made it.
const ownerFile = "owner.pid"

// stateDir is a short directory: unix socket paths in it must stay under 108 bytes, which
// t.TempDir's long names can exceed. Before making it, VMs left behind by test processes that
// died without their cleanups (a test timeout, a kill) are stopped.
func stateDir(t testing.TB, cfg vm.Config) string {
	reapOrphans(t, cfg)
	dir := OwnedDir(t, stateDirPrefix)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// OwnedDir makes a short directory os.TempDir()/<prefix>* that names this test process as its
// owner (so that Abandoned finds it once the process is gone). It is traversable (0711) so that
// QEMU can run as another user. The caller removes it.
func OwnedDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Abandoned are the directories OwnedDir made with prefix whose test process is gone (it died
// without its cleanups: a test timeout, a kill), with that process's pid.
func Abandoned(prefix string) map[string]int {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*", ownerFile))
	dirs := map[string]int{}
	for _, owner := range owners {
		data, err := os.ReadFile(owner)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // unreadable, or its test is still running
		}
		dirs[filepath.Dir(owner)] = pid
	}
	return dirs
}

// reapOrphans stops the VMs in test state directories whose owner process is gone.
func reapOrphans(t testing.TB, cfg vm.Config) {
	for dir, pid := range Abandoned(stateDirPrefix) {
		cfg.StateDir = dir
		m, err := vm.NewManager(cfg)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		machines, _ := m.Scan(ctx)
		for _, mach := range machines {
			_ = mach.Stop(ctx)
		}
		cancel()
		t.Logf("vmtest: stopped %d VMs left by dead test process %d", len(machines), pid)
		os.RemoveAll(dir)
	}
}

// Launch boots a VM and stops it when the test ends.
func Launch(t testing.TB, m *vm.Manager, spec vm.LaunchSpec) *vm.Machine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mach, err := m.Launch(ctx, spec)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mach.Stop(ctx); err != nil {
			t.Errorf("stop vm %s: %v", mach.ID(), err)
		}
	})
	return mach
}

// Image returns the path of the built image name (see `waggle images build`), skipping the
// test when it is not built.
func Image(t testing.TB, name string) string {
	t.Helper()
	img, err := images.Find(CacheDir(t), name)
	if err != nil {
		if errors.Is(err, images.ErrNotBuilt) {
			skip(t, "%v", err)
		}
		t.Fatal(err)
	}
	return img.Path
}

// BusyboxImage returns a small root image made from busybox-static (cached in the test
// cache), with the sandbox user and the tools network tests use (wget, nc), so VM-layer tests
// need no debootstrap.
func BusyboxImage(t testing.TB) string {
	t.Helper()
	path, err := busyboxImage(CacheDir(t))
	if err != nil {
		skip(t, "no busybox guest image: %v", err)
	}
	return path
}

// busyboxImage makes an ext4 root with busybox-static, a sandbox user and its home.
func busyboxImage(cache string) (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static not installed: %w", err)
	}
	dir := filepath.Join(cache, "test-images")
	path := filepath.Join(dir, "busybox.ext4")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := fsutil.Lock(ctx, filepath.Join(dir, ".lock"), nil)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	root, err := os.MkdirTemp(dir, "root-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root)
	for _, d := range []string{"bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "run", "root", "home/sandbox", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, applet := range []string{"sh", "cat", "echo", "ls", "id", "sleep", "true", "false", "wget", "nc", "nslookup", "timeout", "head", "dd", "uname", "hostname", "ip", "ps", "mkdir", "rm", "sync"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\n",
		"etc/group":  "root:x:0:\nsandbox:x:1000:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Chown(filepath.Join(root, "home/sandbox"), 1000, 1000); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if out, err := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-d", root, "-L", "root", tmp, "64M").CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("mke2fs: %w: %s", err, out)
	}
	return path, os.Rename(tmp, path)
}

// NobodyID is the uid and gid tests run QEMU as when they start it themselves as root
// (QEMU never runs as root).
const NobodyID = 65534

// QEMUCredential is what a test that starts QEMU itself runs it as: nil when the test is not
// root (QEMU then runs as the test), else NobodyID.
func QEMUCredential() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: NobodyID, Gid: NobodyID}
}
