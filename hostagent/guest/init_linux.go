// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/waggle-dev/waggle/hostagent/guest/sshd"
	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// Config configures the guest init. Paths are those of the initramfs and the root image.
type Config struct {
	// Console is where markers and logs go.
	Console string
	// Cmdline is the kernel command line file.
	Cmdline string
	// ModulesDir holds the kernel modules (*.ko) of the initramfs.
	ModulesDir string
	// ModulesOrder lists module file names, one per line, in load order. A missing file means
	// there is nothing to load.
	ModulesOrder string
	// RootDevice is the root disk, RootFSType its file system type.
	RootDevice, RootFSType string
	// NewRoot is where the root disk is mounted before the switch.
	NewRoot string
	// DeviceTimeout bounds the wait for RootDevice and Interface to appear.
	DeviceTimeout time.Duration
	// Interface is the network interface configured from wire.BootParams.
	Interface string
	// SSHAddr is the listen address of the SSH server.
	SSHAddr string
	// EnvironmentFile, if the root image has it, sets the environment of every command
	// (KEY="VALUE" lines, as images/ writes them); its PATH replaces SSH.Path.
	EnvironmentFile string
	// SSH is the SSH server's configuration; Run fills in the keys, the trackers and the
	// power-off hook.
	SSH sshd.Config
	// ShutdownGrace is how long processes get between SIGTERM and SIGKILL at power-off.
	ShutdownGrace time.Duration
	// MaxUserProcesses caps the processes and threads of each non-root user (RLIMIT_NPROC), so
	// that a fork bomb leaves the guest able to serve the host (which then kills it).
	MaxUserProcesses uint64
}

// DefaultConfig returns the configuration of a waggle guest booted by hostagent/vm.
func DefaultConfig() Config {
	return Config{
		Console:         "/dev/console",
		Cmdline:         "/proc/cmdline",
		ModulesDir:      "/lib/modules",
		ModulesOrder:    "/lib/modules.order",
		RootDevice:      "/dev/vda",
		RootFSType:      "ext4",
		NewRoot:         "/newroot",
		DeviceTimeout:   10 * time.Second,
		Interface:       "eth0",
		SSHAddr:         ":" + strconv.Itoa(wire.SSHPort),
		EnvironmentFile: "/etc/environment",
		SSH:             sshConfig(),
		ShutdownGrace:   time.Second,

		MaxUserProcesses: 4096,
	}
}

// sshConfig is the guest's SSH server: sshd's defaults, with `/proc/self/exe apt-install` (see
// AptInstall) as the package installer.
func sshConfig() sshd.Config {
	c := sshd.DefaultConfig()
	c.AptInstall = []string{"/proc/self/exe", "apt-install"}
	return c
}

// stage is one named step of the boot pipeline.
type stage struct {
	name string
	run  func() error
}

// boot is the state of one boot.
type boot struct {
	cfg      Config
	start    time.Time
	console  io.Writer // fds 0-2 are the console once early-mounts ran
	log      *slog.Logger
	level    *slog.LevelVar
	params   wire.BootParams
	reaper   *reaper
	hostKeyC chan hostKeyResult // from makeHostKey
	hostKey  ssh.Signer
	listener net.Listener
}

type hostKeyResult struct {
	signer ssh.Signer
	err    error
}

// Run boots the guest as PID 1 and serves SSH until ctx ends, a power-off signal arrives
// (SIGTERM, SIGPWR, SIGINT) or the host requests it; then it stops every process and powers the
// machine off. If a stage fails it prints the WAGGLE-FAILED marker and powers off as well. Run
// returns only if powering off failed.
func Run(ctx context.Context, cfg Config) error {
	b := &boot{cfg: cfg, start: time.Now(), console: os.Stderr, level: new(slog.LevelVar), reaper: newReaper()}
	b.log = slog.New(slog.NewTextHandler(b.console, &slog.HandlerOptions{Level: b.level}))
	b.hostKeyC = make(chan hostKeyResult, 1)
	go func() {
		signer, err := makeHostKey()
		b.hostKeyC <- hostKeyResult{signer, err}
	}()
	// Signals first: a power-off request may arrive at any time during boot.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGPWR, unix.SIGINT, unix.SIGCHLD)
	// Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	err := b.run(ctx, sigs)
	return b.powerOff(err)
}

func (b *boot) run(ctx context.Context, sigs <-chan os.Signal) error {
	stages := []stage{
		{"early-mounts", b.earlyMounts},
		{"cmdline", b.readCmdline},
		{"modules", b.loadModules},
		{"root-device", b.waitRootDevice},
		{"mount-root", b.mountRoot},
		{"switch-root", b.switchRoot},
		{"late-mounts", b.lateMounts},
		{"hostname", b.setHostname},
		{"network", b.configureNetwork},
		{"sysctl", b.hardenKernel},
		{"lockdown", b.lockdown},
		{"ssh-listen", b.listenSSH},
	}
	for _, s := range stages {
		t := time.Now()
		if err := s.run(); err != nil {
			fmt.Fprintln(b.console, wire.FailedLine(s.name, err))
			return fmt.Errorf("stage %s: %w", s.name, err)
		}
		b.log.Debug("stage done", "stage", s.name, "ms", msSince(t), "uptime_ms", msSince(b.start))
	}
	return b.serve(ctx, sigs)
}

func msSince(t time.Time) int64 { return time.Since(t).Milliseconds() }

func (b *boot) readCmdline() error {
	raw, err := os.ReadFile(b.cfg.Cmdline)
	if err != nil {
		return err
	}
	if b.params, err = wire.ParseCmdline(string(raw)); err != nil {
		return err
	}
	if b.params.Debug {
		b.level.Set(slog.LevelDebug)
	}
	if len(b.params.Unknown) > 0 {
		b.log.Warn("unknown kernel parameters", "keys", b.params.Unknown)
	}
	return nil
}

func (b *boot) setHostname() error {
	if err := unix.Sethostname([]byte(b.params.Hostname)); err != nil {
		return err
	}
	return writeHosts("/etc/hosts", b.params.Hostname)
}

// makeHostKey creates the ephemeral host key. Run starts it in the background at once: under TCG
// it takes a noticeable part of the boot, and the stages before ssh-listen mostly wait on the
// kernel.
func makeHostKey() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// listenSSH waits for the host key and creates the listener; serving starts in serve.
func (b *boot) listenSSH() error {
	k := <-b.hostKeyC
	if k.err != nil {
		return k.err
	}
	b.hostKey = k.signer
	var err error
	b.listener, err = net.Listen("tcp", b.cfg.SSHAddr)
	return err
}

// serve runs the SSH server and the reaper until a power-off is due.
func (b *boot) serve(ctx context.Context, sigs <-chan os.Signal) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	powerOff := make(chan struct{}, 1)
	cfg := b.cfg.SSH
	cfg.AuthorizedKey = b.params.AuthorizedKey
	cfg.HostKey = b.hostKey
	cfg.Tracker = b.reaper
	cfg.Privileged = privileged{b.reaper}
	cfg.ClientAddr = b.params.Gateway // the host dials from the gateway of the VM's network
	cfg.Logger = b.log.With("component", "sshd")
	cfg.Identify = b.identify
	cfg.PowerOff = func() {
		select {
		case powerOff <- struct{}{}:
		default:
		}
	}
	if data, err := os.ReadFile(b.cfg.EnvironmentFile); err == nil {
		cfg.Path, cfg.Env = applyEnvironment(cfg.Path, cfg.Env, parseEnvironment(data))
	}
	srv, err := sshd.New(cfg)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, b.listener) }()

	fmt.Fprintln(b.console, wire.HostKeyLine(b.hostKey.PublicKey()))
	fmt.Fprintln(b.console, wire.ReadyMarker)
	b.log.Info("guest ready", "hostname", b.params.Hostname, "uptime_ms", msSince(b.start))

	b.reaper.reap() // children may have died before SIGCHLD was watched
	for {
		select {
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				b.reaper.reap()
				continue
			}
			b.log.Info("power-off signal", "signal", sig.String())
		case <-powerOff:
		case <-ctx.Done():
		case err := <-served:
			return fmt.Errorf("ssh server stopped: %w", err)
		}
		cancel()
		select {
		case err := <-served:
			b.log.Debug("ssh server stopped", "err", err)
		case <-time.After(b.cfg.ShutdownGrace):
		}
		return nil
	}
}

// powerOff stops every process, syncs and unmounts, and powers off. It returns only if the
// power-off system call failed.
func (b *boot) powerOff(cause error) error {
	if cause != nil {
		b.log.Error("boot failed, powering off", "err", cause)
	} else {
		b.log.Info("powering off", "uptime_ms", msSince(b.start))
	}
	// kill(-1) from PID 1 reaches every process but PID 1 itself.
	_ = syscall.Kill(-1, syscall.SIGTERM) // ESRCH: no process left
	deadline := time.Now().Add(b.cfg.ShutdownGrace)
	for reapAll() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_ = syscall.Kill(-1, syscall.SIGKILL)
	deadline = time.Now().Add(b.cfg.ShutdownGrace)
	for reapAll() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	unix.Sync()
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		b.log.Warn("remount root read-only", "err", err)
	}
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	return errors.Join(cause, fmt.Errorf("power off: %w", err))
}

// reapAll collects every exited child and reports whether children remain.
func reapAll() bool {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return false
		case err != nil, pid == 0:
			return true
		}
	}
}
