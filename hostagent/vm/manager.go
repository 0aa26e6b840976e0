// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/initramfs"
	"github.com/waggle-dev/waggle/hostagent/vm/kernel"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
)

// Manager launches VMs and adopts running ones.
type Manager struct {
	cfg     Config
	backend hypervisor.Backend
	ident   *identity // who QEMU runs as

	prepMu sync.Mutex
	prep   *prepared // nil until Prepare succeeded

	mu        sync.Mutex
	launching map[string]bool // ids whose Launch is under way; Scan leaves them alone
}

// prepared is what every boot shares: the kernel, the initramfs and the acceleration.
type prepared struct {
	kernel *kernel.Kernel
	initrd string
	accel  string
	tscKHz int
}

// LaunchSpec describes one VM. Zero sizes take the Manager's defaults.
type LaunchSpec struct {
	// ID names the VM and is its guest hostname (1-63 of a-z, 0-9, '-', starting with a
	// letter or digit); empty means a random one.
	ID string
	// ImagePath is the read-only ext4 base image (e.g. images.Find(...).Path).
	ImagePath string
	CPUs      int
	MemoryMiB int
	// DiskMiB is the size of the VM's root disk (the base image plus what the guest writes).
	DiskMiB int
	// Egress is the VM's egress policy (see Config.Egress); empty means the Manager's default.
	// The VM's shim enforces it for the VM's whole life.
	Egress string
	// Lease stops the VM by itself when nobody renewed it (Machine.Renew) for this long, so
	// that a VM never outlives its owner for good (0: no lease; the VM runs until stopped).
	Lease time.Duration
}

// NewManager checks cfg and returns a Manager. The kernel and initramfs are prepared on the
// first Launch (or Prepare).
func NewManager(cfg Config) (*Manager, error) {
	def := DefaultConfig()
	if cfg.StateDir == "" || cfg.CacheDir == "" || cfg.WaggleBinary == "" || cfg.InitBinary == "" {
		return nil, errors.New("vm: StateDir, CacheDir, WaggleBinary and InitBinary are required")
	}
	switch cfg.Accel {
	case "":
		cfg.Accel = def.Accel
	case "auto", "kvm", "tcg":
	default:
		return nil, fmt.Errorf("vm: accel %q: want auto, kvm or tcg", cfg.Accel)
	}
	setDefault(&cfg.QEMUBinary, def.QEMUBinary)
	setDefault(&cfg.QEMUImgBinary, def.QEMUImgBinary)
	setDefault(&cfg.KernelPackage, def.KernelPackage)
	setDefault(&cfg.ProbeTimeout, def.ProbeTimeout)
	setDefault(&cfg.SilenceTimeout, def.SilenceTimeout)
	setDefault(&cfg.SilenceCPU, def.SilenceCPU)
	setDefault(&cfg.BootTimeout, def.BootTimeout)
	setDefault(&cfg.BootAttempts, def.BootAttempts)
	setDefault(&cfg.CPUs, def.CPUs)
	setDefault(&cfg.MemoryMiB, def.MemoryMiB)
	setDefault(&cfg.DiskMiB, def.DiskMiB)
	setDefault(&cfg.Egress, def.Egress)
	setDefault(&cfg.Cgroups, def.Cgroups)
	setDefault(&cfg.Logger, def.Logger)
	if cfg.Cgroups != CgroupsAuto && cfg.Cgroups != CgroupsOn && cfg.Cgroups != CgroupsOff {
		return nil, fmt.Errorf("vm: cgroups %q: want %s, %s or %s", cfg.Cgroups, CgroupsAuto, CgroupsOn, CgroupsOff)
	}
	if _, err := vnet.ParsePolicy(cfg.Egress); err != nil {
		return nil, fmt.Errorf("vm: egress: %w", err)
	}
	for _, p := range []*string{&cfg.StateDir, &cfg.CacheDir, &cfg.WaggleBinary, &cfg.InitBinary} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("vm: %w", err)
		}
		*p = abs
	}
	// Traversable but not listable, so that QEMU running as QEMUUser reaches its own VM
	// directory (0700, owned by that user) and nothing else.
	if err := os.MkdirAll(vmsDir(cfg.StateDir), 0o711); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	if err := os.Chmod(vmsDir(cfg.StateDir), 0o711); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	var err error
	if cfg.CgroupRoot, err = resolveCgroups(cfg); err != nil {
		return nil, err
	}
	qcfg := qemu.DefaultConfig()
	qcfg.Binary, qcfg.ImgBinary, qcfg.Logger = cfg.QEMUBinary, cfg.QEMUImgBinary, cfg.Logger
	m := &Manager{cfg: cfg, backend: qemu.New(qcfg), launching: make(map[string]bool)}
	if m.ident, err = newIdentity(cfg, m.exists); err != nil {
		return nil, err
	}
	if m.ident.unprivileged() {
		for _, dir := range []string{vmsDir(cfg.StateDir), cfg.CacheDir} {
			if err := reachable(dir); err != nil {
				return nil, fmt.Errorf("vm: %w", err)
			}
		}
	}
	return m, nil
}

// exists reports whether VM id is being launched or has its directory: the owner of a uid
// claim that is still in use.
func (m *Manager) exists(id string) bool {
	if m.isLaunching(id) {
		return true
	}
	_, err := os.Stat(filepath.Join(vmsDir(m.cfg.StateDir), id))
	return err == nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func vmsDir(stateDir string) string { return filepath.Join(stateDir, "vms") }

// Prepare fetches the kernel, builds the initramfs and settles the acceleration. It does the
// work once; after a failure the next call tries again.
func (m *Manager) Prepare(ctx context.Context) error {
	_, err := m.prepared(ctx)
	return err
}

func (m *Manager) prepared(ctx context.Context) (*prepared, error) {
	m.prepMu.Lock()
	defer m.prepMu.Unlock()
	if m.prep != nil {
		return m.prep, nil
	}
	p, err := m.prepare(ctx)
	if err != nil {
		return nil, err
	}
	m.prep = &p
	return m.prep, nil
}

func (m *Manager) prepare(ctx context.Context) (prepared, error) {
	kcfg := kernel.DefaultConfig(m.cfg.CacheDir)
	kcfg.Package, kcfg.Logger = m.cfg.KernelPackage, m.cfg.Logger
	k, err := kernel.Fetch(ctx, kcfg)
	if err != nil {
		return prepared{}, fmt.Errorf("prepare: %w", err)
	}
	initrd, err := initramfs.Build(ctx, m.cfg.CacheDir, m.cfg.InitBinary, k.Modules)
	if err != nil {
		return prepared{}, fmt.Errorf("prepare: %w", err)
	}
	accel, err := m.resolveAccel(ctx, k)
	if err != nil {
		return prepared{}, fmt.Errorf("prepare: %w", err)
	}
	p := prepared{kernel: k, initrd: initrd, accel: accel}
	if accel == "tcg" {
		p.tscKHz = qemu.HostTSCKHz()
	}
	return p, nil
}

// Accel returns the acceleration VMs use ("kvm" or "tcg").
func (m *Manager) Accel(ctx context.Context) (string, error) {
	p, err := m.prepared(ctx)
	if err != nil {
		return "", err
	}
	return p.accel, nil
}

// idRE allows ids that are valid hostnames and keep the VM's socket paths short.
var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Launch boots a VM and returns once its SSH server is ready. On error nothing of the VM is
// left behind.
func (m *Manager) Launch(ctx context.Context, spec LaunchSpec) (_ *Machine, err error) {
	prep, err := m.prepared(ctx)
	if err != nil {
		return nil, err
	}
	if spec.ID == "" {
		spec.ID = randomID()
	}
	if !idRE.MatchString(spec.ID) {
		return nil, fmt.Errorf("vm: bad id %q: use 1-63 of a-z, 0-9, '-'", spec.ID)
	}
	if spec.Lease < 0 || spec.Lease > shim.MaxLease {
		return nil, fmt.Errorf("vm %s: lease %s out of range: use 0 (none) up to %s", spec.ID, spec.Lease, shim.MaxLease)
	}
	setDefault(&spec.CPUs, m.cfg.CPUs)
	setDefault(&spec.MemoryMiB, m.cfg.MemoryMiB)
	setDefault(&spec.DiskMiB, m.cfg.DiskMiB)
	setDefault(&spec.Egress, m.cfg.Egress)
	egress, err := vnet.ParsePolicy(spec.Egress)
	if err != nil {
		return nil, fmt.Errorf("vm %s: egress: %w", spec.ID, err)
	}
	log := m.cfg.Logger.With("vm", spec.ID)

	// Stage: directory.
	dir := filepath.Join(vmsDir(m.cfg.StateDir), spec.ID)
	m.setLaunching(spec.ID, true)
	defer m.setLaunching(spec.ID, false)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm %s: directory: %w", spec.ID, err)
	}
	mach := &Machine{id: spec.ID, dir: dir, cgroupRoot: m.cfg.CgroupRoot, ident: m.ident}
	defer func() {
		if err != nil {
			if stopErr := mach.Stop(context.WithoutCancel(ctx)); stopErr != nil {
				log.Error("clean up failed launch", "err", stopErr)
			}
		}
	}()

	// Stage: key.
	signer, pub, err := newKey(dir)
	if err != nil {
		return nil, fmt.Errorf("vm %s: key: %w", spec.ID, err)
	}
	mach.signer = signer

	// Stage: disk.
	disk, err := m.backend.PrepareDisk(ctx, spec.ImagePath, dir, spec.DiskMiB)
	if err != nil {
		return nil, fmt.Errorf("vm %s: disk: %w", spec.ID, err)
	}

	// Stage: user (who QEMU runs as; the shim hands it the files it opens).
	uid, gid, err := m.user(ctx, spec.ID, spec.ImagePath, prep.kernel.Vmlinux, prep.initrd)
	if err != nil {
		return nil, fmt.Errorf("vm %s: user: %w", spec.ID, err)
	}

	// Stage: shim.
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	sspec := shim.Spec{
		VM: hypervisor.Spec{
			Name:      spec.ID,
			Kernel:    prep.kernel.Vmlinux,
			Initrd:    prep.initrd,
			Disk:      disk,
			CPUs:      spec.CPUs,
			MemoryMiB: spec.MemoryMiB,
			Accel:     prep.accel,
			TSCKHz:    prep.tscKHz,
			UID:       uid,
			GID:       gid,
			Groups:    m.ident.groups,
			Cmdline: cmdlineKey + "=" + base64.StdEncoding.EncodeToString([]byte(authorized)) +
				" " + cmdlineHostname + "=" + spec.ID,
		},
		QEMUBinary:     m.cfg.QEMUBinary,
		CgroupRoot:     m.cfg.CgroupRoot,
		ReadyMarker:    wire.ReadyMarker,
		FailedMarker:   wire.FailedMarker,
		HostKeyMarker:  wire.HostKeyMarker,
		SilenceTimeout: m.cfg.SilenceTimeout,
		SilenceCPU:     m.cfg.SilenceCPU,
		BootTimeout:    m.cfg.BootTimeout,
		Attempts:       m.cfg.BootAttempts,
		Egress:         egress,
		Lease:          spec.Lease,
		PackageProxy:   m.cfg.PackageProxy,
	}
	if err := shim.WriteSpec(dir, sspec); err != nil {
		return nil, fmt.Errorf("vm %s: shim: %w", spec.ID, err)
	}
	client, err := shim.Launch(ctx, m.cfg.WaggleBinary, dir)
	if err != nil {
		return nil, fmt.Errorf("vm %s: shim: %w", spec.ID, err)
	}
	mach.shim = client

	// Stage: boot.
	st, err := client.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("vm %s: boot: %w%s", spec.ID, err, consoleTail(dir))
	}
	mach.setState(st)
	log.Info("vm ready", "boot_seconds", st.BootSeconds, "attempts", st.Attempts, "accel", prep.accel,
		"egress", egress.String())
	return mach, nil
}

func (m *Manager) setLaunching(id string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.launching[id] = true
	} else {
		delete(m.launching, id)
	}
}

func (m *Manager) isLaunching(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.launching[id]
}

// Scan finds the VMs in StateDir again (after a restart of this process): it returns a
// Machine for each live, ready VM (waiting for one still booting) and removes what is left of
// dead or failed ones. VMs this Manager is launching are skipped; another process must not
// launch VMs in the same StateDir meanwhile.
func (m *Manager) Scan(ctx context.Context) ([]*Machine, error) {
	entries, err := os.ReadDir(vmsDir(m.cfg.StateDir))
	if err != nil {
		return nil, fmt.Errorf("vm: scan: %w", err)
	}
	var found []*Machine
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || m.isLaunching(e.Name()) {
			continue
		}
		mach, err := m.adopt(ctx, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if mach != nil {
			found = append(found, mach)
		}
	}
	return found, errors.Join(errs...)
}

// adopt returns the Machine in StateDir/vms/id, or nil after removing a dead one.
func (m *Manager) adopt(ctx context.Context, id string) (*Machine, error) {
	dir := filepath.Join(vmsDir(m.cfg.StateDir), id)
	mach := &Machine{id: id, dir: dir, cgroupRoot: m.cfg.CgroupRoot, ident: m.ident}
	client, err := shim.Open(dir)
	if err == nil {
		mach.shim = client
	}
	if err != nil || !client.Alive() {
		m.cfg.Logger.Info("removing dead vm", "vm", id)
		return nil, mach.Stop(ctx)
	}
	// A VM still booting (its launcher died mid-boot) is waited for.
	st, err := client.Wait(ctx)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("vm %s: adopt: %w", id, ctx.Err())
	}
	if err != nil {
		m.cfg.Logger.Info("removing unusable vm", "vm", id, "phase", st.Phase, "err", err)
		return nil, mach.Stop(ctx)
	}
	mach.setState(st)
	if mach.signer, err = loadKey(dir); err != nil {
		return nil, errors.Join(fmt.Errorf("vm %s: adopt: %w", id, err), mach.Stop(ctx))
	}
	return mach, nil
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "vm-" + hex.EncodeToString(b[:])
}

const keyFile = "id_ed25519"

// newKey makes the VM's SSH key pair; the private key stays in dir (0600) so that an adopted
// VM can be reached again.
func newKey(dir string) (ssh.Signer, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "waggle vm")
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	return signer, sshPub, err
}

func loadKey(dir string) (ssh.Signer, error) {
	data, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(data)
}

// consoleTail returns the end of the VM's console, QEMU and shim logs, for boot errors.
func consoleTail(dir string) string {
	var b strings.Builder
	for _, name := range []string{shim.ConsoleLog, qemu.LogName, shim.ShimLog} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		const max = 2000
		if len(data) > max {
			data = data[len(data)-max:]
		}
		fmt.Fprintf(&b, "\n%s:\n%s", name, data)
	}
	return b.String()
}
