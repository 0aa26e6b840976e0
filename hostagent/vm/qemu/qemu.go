// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package qemu is the QEMU `-M microvm` backend: it prepares qcow2 overlay disks and runs
// qemu-system-x86_64 with a PVH kernel, an initramfs, virtio-mmio devices, QEMU's seccomp
// sandbox, as the unprivileged user its Spec names (never as root) and inside a cgroup when
// one is configured. Through QMP it saves a running VM (pause, switch to a new overlay, migrate
// to a file descriptor) and starts VMs from saved state (-incoming through an inherited
// descriptor).
package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/vm/cgroup"
	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
)

// Config configures the backend.
type Config struct {
	// Binary is the QEMU system emulator.
	Binary string
	// ImgBinary is qemu-img.
	ImgBinary string
	// CgroupRoot is the cgroup v2 directory for per-VM groups; empty disables cgroups. A VM
	// whose group cannot be made there does not start.
	CgroupRoot string
	// MemoryOverheadMiB is added to the guest memory for the cgroup's memory.max (QEMU
	// itself, the TCG translation cache and the mmapped kernel).
	MemoryOverheadMiB int
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	Logger      *slog.Logger
}

// DefaultConfig returns the backend's defaults.
func DefaultConfig() Config {
	return Config{
		Binary:            "qemu-system-x86_64",
		ImgBinary:         "qemu-img",
		CgroupRoot:        cgroup.DefaultRoot,
		MemoryOverheadMiB: 384,
		StopTimeout:       2 * time.Second,
		Logger:            slog.Default(),
	}
}

// Backend runs VMs with QEMU.
type Backend struct{ cfg Config }

// New returns a QEMU backend.
func New(cfg Config) *Backend {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Backend{cfg: cfg}
}

var _ hypervisor.Backend = (*Backend)(nil)

// Name implements hypervisor.Backend.
func (b *Backend) Name() string { return "qemu" }

// PrepareDisk creates the qcow2 disk path over backing (the raw base image first), with a
// virtual size of sizeMiB (the guest cannot write more), but never smaller than the base
// image: the guest's file system has the base image's size, and a smaller disk would not
// mount. The chain is given to QEMU explicitly at start, so the backing file name recorded in
// the disk is only informative.
func (b *Backend) PrepareDisk(ctx context.Context, path string, backing []string, sizeMiB int) error {
	if len(backing) == 0 {
		return errors.New("prepare disk: no base image")
	}
	st, err := os.Stat(backing[0])
	if err != nil {
		return fmt.Errorf("prepare disk: %w", err)
	}
	sizeMiB = max(sizeMiB, int((st.Size()+1<<20-1)>>20))
	for _, layer := range backing[1:] {
		if _, err := os.Stat(layer); err != nil {
			return fmt.Errorf("prepare disk: layer: %w", err)
		}
	}
	top := backing[len(backing)-1]
	cmd := exec.CommandContext(ctx, b.cfg.ImgBinary, "create", "-q", "-f", "qcow2", "-F", diskFormat(backing, len(backing)-1),
		"-b", top, "-u", path, strconv.Itoa(sizeMiB)+"M")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("prepare disk: qemu-img: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// diskFormat is the format of backing[i]: the base image is raw, layers are qcow2.
func diskFormat(backing []string, i int) string {
	if i == 0 {
		return "raw"
	}
	return "qcow2"
}

// Version implements hypervisor.Backend: the first line of `qemu --version`.
func (b *Backend) Version(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, b.cfg.Binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu version: %w", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// Descriptors QEMU inherits, in this order from fd 3 (see Args): the backing chain, the
// template memory, the incoming state.
const firstFD = 3

// Args returns QEMU's command line for spec (without the binary). Saved state is loaded
// through inherited descriptors (the sandbox forbids QEMU to spawn helpers), and so is the
// read-only disk chain: QEMU needs no access to those files by name.
func Args(spec hypervisor.Spec) []string {
	cpu := "max"
	if spec.Accel == "kvm" {
		cpu = "host"
	}
	fd := firstFD
	args := []string{
		"-M", "microvm,memory-backend=ram", "-accel", spec.Accel, "-cpu", cpu,
		"-m", strconv.Itoa(spec.MemoryMiB), "-smp", strconv.Itoa(spec.CPUs),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-object", memoryBackend(spec, fd+len(spec.Backing)),
		"-serial", "stdio",
		"-qmp", "unix:" + qmpPath(spec.Dir) + ",server=on,wait=off",
	}
	if spec.Incoming == nil {
		cmdline := []string{"console=ttyS0", "rdinit=/init", "panic=-1", "reboot=t", "quiet"}
		if spec.TSCKHz > 0 {
			cmdline = append(cmdline, "tsc_early_khz="+strconv.Itoa(spec.TSCKHz))
		}
		if spec.Cmdline != "" {
			cmdline = append(cmdline, spec.Cmdline)
		}
		args = append(args, "-kernel", spec.Kernel, "-initrd", spec.Initrd, "-append", strings.Join(cmdline, " "))
	}
	// The disk chain: read-only nodes d0 (raw base), d1... (qcow2 layers), then the writable disk.
	backing := ""
	for i := range spec.Backing {
		node := "d" + strconv.Itoa(i)
		set := strconv.Itoa(i + 1)
		args = append(args, "-add-fd", "fd="+strconv.Itoa(fd)+",set="+set,
			"-blockdev", "driver=file,node-name=f"+node+",filename=/dev/fdset/"+set+",read-only=on",
			"-blockdev", "driver="+diskFormat(spec.Backing, i)+",node-name="+node+",file=f"+node+",read-only=on"+backing)
		backing = ",backing=" + node
		fd++
	}
	args = append(args,
		"-blockdev", "driver=file,node-name=f"+topNode+",filename="+spec.Disk+",discard=unmap",
		"-blockdev", "driver=qcow2,node-name="+topNode+",file=f"+topNode+",discard=unmap"+backing,
		"-device", "virtio-blk-device,drive="+topNode,
		"-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path="+spec.NetSocket,
		"-device", "virtio-net-device,netdev=net0,mac="+wire.GuestMAC,
	)
	if spec.Incoming != nil {
		args = append(args, "-incoming", "defer")
	}
	return args
}

// topNode is the block node name of the VM's writable disk at start.
const topNode = "disk"

// memoryBackend is the guest RAM object: anonymous memory, the shared memory file, or the
// template memory (inherited as descriptor fd) mapped privately. Every VM has the same RAM
// block name, so that state saved by one kind loads into another.
func memoryBackend(spec hypervisor.Spec, fd int) string {
	size := ",size=" + strconv.Itoa(spec.MemoryMiB) + "M"
	switch {
	case spec.TemplateMemory != nil:
		return "memory-backend-file,id=ram" + size + ",mem-path=/proc/self/fd/" + strconv.Itoa(fd) + ",share=off"
	case spec.SharedMemory:
		return "memory-backend-file,id=ram" + size + ",mem-path=" + memoryPath(spec.Dir) + ",share=on"
	}
	return "memory-backend-ram,id=ram" + size
}

func qmpPath(dir string) string    { return filepath.Join(dir, runDir, "qmp.sock") }
func memoryPath(dir string) string { return filepath.Join(dir, runDir, "memory") }

// LogName is the file in the VM directory that receives QEMU's own messages.
const LogName = "qemu.log"

// runDir is the subdirectory of the VM directory where QEMU may create files (its QMP socket,
// a shared memory file).
const runDir = "qemu"

// Start implements hypervisor.Backend. QEMU's serial console goes to spec.Console, its own
// messages to dir/qemu.log.
func (b *Backend) Start(ctx context.Context, spec hypervisor.Spec) (hypervisor.Handle, error) {
	logPath := filepath.Join(spec.Dir, LogName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	defer logFile.Close()
	var files []*os.File
	defer func() {
		for _, f := range files[:len(spec.Backing)] {
			f.Close()
		}
	}()
	for _, path := range spec.Backing {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("start qemu: disk chain: %w", err)
		}
		files = append(files, f)
	}
	for _, f := range []*os.File{spec.TemplateMemory, spec.Incoming} {
		if f != nil {
			files = append(files, f)
		}
	}
	cmd := exec.Command(b.cfg.Binary, Args(spec)...)
	cmd.Stdout = spec.Console
	cmd.Stderr = logFile
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.runAs(cmd, spec); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	group, err := b.cgroup(spec)
	if err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	if group != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = group.FD()
	}
	if err := cmd.Start(); err != nil {
		if group != nil {
			_ = group.Remove()
		}
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	p := &Process{cmd: cmd, group: group, stopTimeout: b.cfg.StopTimeout, done: make(chan struct{}),
		spec: spec, logPath: logPath, top: topNode, disk: spec.Disk}
	go p.wait()
	b.cfg.Logger.Info("qemu started", "vm", spec.Name, "pid", cmd.Process.Pid, "accel", spec.Accel,
		"uid", spec.UID, "gid", spec.GID, "cgroup", group != nil, "incoming", spec.Incoming != nil)
	if spec.Incoming != nil {
		if err := p.startIncoming(ctx); err != nil {
			return nil, errors.Join(fmt.Errorf("start qemu: %w", err), p.Stop(context.WithoutCancel(ctx)))
		}
	}
	return p, nil
}

// ErrRoot is returned for a Spec that would run QEMU as root.
var ErrRoot = errors.New("refusing to run qemu as root: the VM spec names no unprivileged uid")

// runAs makes QEMU run as spec.UID and spec.GID. QEMU then owns only what it must open (the
// disk, the network socket, mode 0600) and its run directory; the VM directory stays the
// shim's, made traversable (0711) so QEMU reaches those files without seeing the rest, and
// another VM's QEMU (another uid) can open none of them. A shim running as root never starts
// QEMU as root.
func (b *Backend) runAs(cmd *exec.Cmd, spec hypervisor.Spec) error {
	run := filepath.Join(spec.Dir, runDir)
	if err := os.Mkdir(run, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if spec.UID == 0 {
		if os.Geteuid() == 0 {
			return ErrRoot
		}
		return nil // an unprivileged shim runs QEMU as itself
	}
	for _, p := range []string{run, spec.Disk, spec.NetSocket} {
		if err := os.Chown(p, spec.UID, spec.GID); err != nil {
			return fmt.Errorf("hand %s to uid %d: %w", p, spec.UID, err)
		}
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{spec.Disk, 0o600}, {spec.NetSocket, 0o600}, {spec.Dir, 0o711}} {
		if err := os.Chmod(f.path, f.mode); err != nil {
			return err
		}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), Groups: spec.Groups}
	return nil
}

// cgroup makes the VM's group, when cgroups are configured; a group that cannot be made is an
// error (the VM does not start without the limits it was configured to have).
func (b *Backend) cgroup(spec hypervisor.Spec) (*cgroup.Group, error) {
	if b.cfg.CgroupRoot == "" {
		return nil, nil
	}
	return cgroup.Create(b.cfg.CgroupRoot, spec.Name, cgroup.Limits{
		CPUs:        spec.CPUs,
		MemoryBytes: int64(spec.MemoryMiB+b.cfg.MemoryOverheadMiB) << 20,
	})
}

// Process is a running QEMU.
type Process struct {
	cmd         *exec.Cmd
	group       *cgroup.Group
	stopTimeout time.Duration
	done        chan struct{}
	stopOnce    sync.Once
	err         error

	spec    hypervisor.Spec
	logPath string

	mu       sync.Mutex // guards the fields below: one QMP operation at a time
	qmp      *QMP       // nil until first needed
	incoming bool       // saved state is being loaded
	top      string     // block node of the writable disk
	disk     string     // its file
	overlays int        // disks added by saves
}

func (p *Process) wait() {
	p.err = p.cmd.Wait()
	if p.group != nil {
		_ = p.group.Remove()
	}
	close(p.done)
}

// ID returns QEMU's pid.
func (p *Process) ID() string { return strconv.Itoa(p.cmd.Process.Pid) }

// Done is closed when QEMU has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// IsAlive reports whether QEMU is still running.
func (p *Process) IsAlive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, then SIGKILL after the stop timeout or when ctx ends, and waits for
// QEMU to exit.
func (p *Process) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) })
	t := time.NewTimer(p.stopTimeout)
	defer t.Stop()
	defer p.closeQMP()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop qemu: %w", err)
	}
	<-p.done
	return nil
}
