// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
)

// Manager launches VMs (from a template snapshot when it can, else by booting them), takes
// and restores snapshots, and adopts running VMs after a restart.
type Manager struct {
	cfg     Config
	backend hypervisor.Backend
	ident   *identity // who QEMU runs as

	prepMu sync.Mutex
	prep   *prepared // nil until Prepare succeeded

	mu        sync.Mutex
	launching map[string]bool // ids whose Launch is under way; Scan leaves them alone

	templates templates
}

// prepared is what every VM shares: the kernel, the initramfs, the acceleration and the
// hypervisor's version.
type prepared struct {
	kernel     *kernel.Kernel
	initrd     string
	accel      string
	tscKHz     int
	hypervisor string
}

// LaunchSpec describes one VM. Zero sizes take the Manager's defaults.
type LaunchSpec struct {
	// ID names the VM and is its guest hostname (1-63 of a-z, 0-9, '-', starting with a
	// letter or digit); empty means a random one.
	ID string
	// ImagePath is the read-only ext4 base image (e.g. images.Find(...).Path). Restore takes
	// the snapshot's when it is empty.
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
	// ColdBoot makes Launch boot the kernel even when a template could be restored.
	ColdBoot bool
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
	setDefault(&cfg.Templates, def.Templates)
	switch cfg.Templates {
	case TemplatesShared, TemplatesPrivate, TemplatesOff:
	default:
		return nil, fmt.Errorf("vm: templates %q: want %s, %s or %s", cfg.Templates, TemplatesShared, TemplatesPrivate, TemplatesOff)
	}
	setDefault(&cfg.QEMUBinary, def.QEMUBinary)
	setDefault(&cfg.QEMUImgBinary, def.QEMUImgBinary)
	setDefault(&cfg.KernelPackage, def.KernelPackage)
	setDefault(&cfg.ProbeTimeout, def.ProbeTimeout)
	setDefault(&cfg.SilenceTimeout, def.SilenceTimeout)
	setDefault(&cfg.SilenceCPU, def.SilenceCPU)
	setDefault(&cfg.BootTimeout, def.BootTimeout)
	setDefault(&cfg.BootAttempts, def.BootAttempts)
	setDefault(&cfg.RestoreTimeout, def.RestoreTimeout)
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
	m := &Manager{cfg: cfg, backend: qemu.New(qcfg), launching: make(map[string]bool), templates: newTemplates()}
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
	version, err := m.backend.Version(ctx)
	if err != nil {
		return prepared{}, fmt.Errorf("prepare: %w", err)
	}
	p := prepared{kernel: k, initrd: initrd, accel: accel, hypervisor: version}
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

// normalize fills spec's defaults and checks it.
func (m *Manager) normalize(spec LaunchSpec) (LaunchSpec, vnet.Policy, error) {
	if spec.ID == "" {
		spec.ID = randomID()
	}
	if !idRE.MatchString(spec.ID) {
		return spec, vnet.Policy{}, fmt.Errorf("vm: bad id %q: use 1-63 of a-z, 0-9, '-'", spec.ID)
	}
	if spec.Lease < 0 || spec.Lease > shim.MaxLease {
		return spec, vnet.Policy{}, fmt.Errorf("vm %s: lease %s out of range: use 0 (none) up to %s", spec.ID, spec.Lease, shim.MaxLease)
	}
	setDefault(&spec.CPUs, m.cfg.CPUs)
	setDefault(&spec.MemoryMiB, m.cfg.MemoryMiB)
	setDefault(&spec.DiskMiB, m.cfg.DiskMiB)
	setDefault(&spec.Egress, m.cfg.Egress)
	egress, err := vnet.ParsePolicy(spec.Egress)
	if err != nil {
		return spec, vnet.Policy{}, fmt.Errorf("vm %s: egress: %w", spec.ID, err)
	}
	return spec, egress, nil
}

// Launch starts a VM and returns once its SSH server is ready: restored from the template of
// its image and size (made on first use, see Template) unless templates are off or
// spec.ColdBoot is set, else booted. A template that fails to restore is dropped and the VM
// booted instead. On error nothing of the VM is left behind.
func (m *Manager) Launch(ctx context.Context, spec LaunchSpec) (*Machine, error) {
	prep, err := m.prepared(ctx)
	if err != nil {
		return nil, err
	}
	spec, egress, err := m.normalize(spec)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(spec.ImagePath); err != nil {
		return nil, fmt.Errorf("vm %s: disk: image: %w", spec.ID, err)
	}
	log := m.cfg.Logger.With("vm", spec.ID)
	if m.cfg.Templates != TemplatesOff && !spec.ColdBoot {
		tpl, err := m.template(ctx, prep, templateSpecOf(spec))
		if err == nil {
			mach, err := m.start(ctx, prep, spec, egress, startOptions{from: &tpl.restore})
			if err == nil || ctx.Err() != nil {
				return mach, err
			}
			log.Warn("restore from template failed; dropping the template and booting", "template", tpl.Dir, "err", err)
			m.dropTemplate(tpl)
		} else if ctx.Err() != nil {
			return nil, err
		} else {
			log.Warn("no template; booting", "err", err)
		}
	}
	return m.start(ctx, prep, spec, egress, startOptions{})
}

// SnapshotDir is where the snapshot called name of this host's VMs goes (pause and fork
// snapshots; templates live in the cache). Its parent exists once SnapshotDir returns.
func (m *Manager) SnapshotDir(name string) (string, error) {
	if !idRE.MatchString(name) {
		return "", fmt.Errorf("vm: bad snapshot name %q: use 1-63 of a-z, 0-9, '-'", name)
	}
	parent := filepath.Join(m.cfg.StateDir, "snapshots")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("vm: %w", err)
	}
	return filepath.Join(parent, name), nil
}

// Restore starts a VM from snap (see Machine.Snapshot) and gives its guest a new identity:
// new SSH keys, host name spec.ID, a reseeded RNG and the host's clock. spec's sizes must be
// 0 or the snapshot's; an empty ImagePath means the snapshot's base image, another must have
// its size. The snapshot is left as it was (the VM links or copies what it needs).
func (m *Manager) Restore(ctx context.Context, snap snapshot.Snapshot, spec LaunchSpec) (*Machine, error) {
	prep, err := m.prepared(ctx)
	if err != nil {
		return nil, err
	}
	if err := snap.Check(); err != nil {
		return nil, fmt.Errorf("vm %s: restore: %w", spec.ID, err)
	}
	for _, size := range []struct {
		name      string
		got, want int
	}{{"cpus", spec.CPUs, snap.CPUs}, {"memory", spec.MemoryMiB, snap.MemoryMiB}, {"disk", spec.DiskMiB, snap.DiskMiB}} {
		if size.got != 0 && size.got != size.want {
			return nil, fmt.Errorf("vm %s: restore: %s %d differs from the snapshot's %d", spec.ID, size.name, size.got, size.want)
		}
	}
	spec.CPUs, spec.MemoryMiB, spec.DiskMiB = snap.CPUs, snap.MemoryMiB, snap.DiskMiB
	setDefault(&spec.ImagePath, snap.Base.Path)
	spec, egress, err := m.normalize(spec)
	if err != nil {
		return nil, err
	}
	r, err := m.restoreSource(prep, snap, spec.ImagePath)
	if err != nil {
		return nil, fmt.Errorf("vm %s: restore: %w", spec.ID, err)
	}
	return m.start(ctx, prep, spec, egress, startOptions{from: &r})
}

// restoreSource is where a restore comes from: the snapshot, checked against this host, and the
// template memory for a snapshot whose memory is mapped.
type restoreSource struct {
	snap   snapshot.Snapshot
	image  string
	memory *os.File // sealed template memory, or nil
}

func (m *Manager) restoreSource(prep *prepared, snap snapshot.Snapshot, image string) (restoreSource, error) {
	switch {
	case snap.Backend != m.backend.Name():
		return restoreSource{}, fmt.Errorf("snapshot of backend %q, this host runs %q", snap.Backend, m.backend.Name())
	case snap.Hypervisor != prep.hypervisor:
		return restoreSource{}, fmt.Errorf("snapshot made by %q, this host runs %q", snap.Hypervisor, prep.hypervisor)
	case snap.Accel != prep.accel:
		return restoreSource{}, fmt.Errorf("snapshot saved under %s, this host runs %s", snap.Accel, prep.accel)
	}
	st, err := os.Stat(image)
	if err != nil {
		return restoreSource{}, fmt.Errorf("base image: %w", err)
	}
	if st.Size() != snap.Base.Size {
		return restoreSource{}, fmt.Errorf("base image %s has %d bytes, the snapshot's had %d", image, st.Size(), snap.Base.Size)
	}
	r := restoreSource{snap: snap, image: image}
	if snap.Memory != "" {
		if r.memory, err = m.templates.memory(snap); err != nil {
			return restoreSource{}, fmt.Errorf("memory: %w", err)
		}
	}
	return r, nil
}

// startOptions say how start starts a VM.
type startOptions struct {
	// from, when set, is the snapshot to restore; else the VM boots.
	from *restoreSource
	// sharedMemory keeps a booted VM's memory in a file (for a template).
	sharedMemory bool
}

// start runs the launch pipeline, in named stages: directory, key, files (a restore's
// snapshot files), shim, then boot or restore (waiting for the shim). A failure names its
// stage.
func (m *Manager) start(ctx context.Context, prep *prepared, spec LaunchSpec, egress vnet.Policy, opts startOptions) (_ *Machine, err error) {
	from := opts.from
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

	sspec := shim.Spec{
		Backend: m.backend.Name(),
		VM: hypervisor.Spec{
			Name:         spec.ID,
			Disk:         filepath.Join(dir, diskFile),
			Backing:      []string{spec.ImagePath},
			CPUs:         spec.CPUs,
			MemoryMiB:    spec.MemoryMiB,
			Accel:        prep.accel,
			SharedMemory: opts.sharedMemory,
		},
		DiskMiB:        spec.DiskMiB,
		QEMUBinary:     m.cfg.QEMUBinary,
		QEMUImgBinary:  m.cfg.QEMUImgBinary,
		CgroupRoot:     m.cfg.CgroupRoot,
		SilenceTimeout: m.cfg.SilenceTimeout,
		SilenceCPU:     m.cfg.SilenceCPU,
		BootTimeout:    m.cfg.BootTimeout,
		Attempts:       m.cfg.BootAttempts,
		Egress:         egress,
		Lease:          spec.Lease,
		PackageProxy:   m.cfg.PackageProxy,
	}
	var memory *os.File
	stage := "boot"
	if from == nil {
		params := wire.DefaultBootParams()
		params.AuthorizedKey, params.Hostname = pub, spec.ID
		cmdline, err := params.Cmdline()
		if err != nil {
			return nil, fmt.Errorf("vm %s: key: %w", spec.ID, err)
		}
		sspec.VM.Kernel, sspec.VM.Initrd, sspec.VM.TSCKHz, sspec.VM.Cmdline = prep.kernel.Vmlinux, prep.initrd, prep.tscKHz, cmdline
	} else {
		// Stage: files.
		stage, memory = "restore", from.memory
		r, backing, err := linkSnapshot(dir, from.snap, from.image)
		if err != nil {
			return nil, fmt.Errorf("vm %s: files: %w", spec.ID, err)
		}
		r.AuthorizedKey, r.Timeout, r.TemplateMemory = wire.MarshalKey(pub), m.cfg.RestoreTimeout, memory != nil
		sspec.VM.Backing, sspec.Restore = backing, &r
	}

	// Stage: user (who QEMU runs as; the shim hands it the files it opens).
	reads := []string{spec.ImagePath, sspec.VM.Kernel, sspec.VM.Initrd}
	if from != nil {
		reads = []string{spec.ImagePath}
	}
	if sspec.VM.UID, sspec.VM.GID, err = m.user(ctx, spec.ID, reads...); err != nil {
		return nil, fmt.Errorf("vm %s: user: %w", spec.ID, err)
	}
	sspec.VM.Groups = m.ident.groups

	// Stage: shim.
	if err := shim.WriteSpec(dir, sspec); err != nil {
		return nil, fmt.Errorf("vm %s: shim: %w", spec.ID, err)
	}
	client, err := shim.Launch(ctx, m.cfg.WaggleBinary, dir, memory)
	if err != nil {
		return nil, fmt.Errorf("vm %s: shim: %w", spec.ID, err)
	}
	mach.shim = client

	// Stage: boot or restore.
	st, err := client.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %s: %w%s", spec.ID, stage, err, consoleTail(dir))
	}
	mach.setState(st)
	log.Info("vm ready", "how", stage, "seconds", st.BootSeconds, "attempts", st.Attempts, "accel", prep.accel,
		"egress", egress.String())
	return mach, nil
}

// diskFile is the VM's writable disk in its directory.
const diskFile = "disk.qcow2"

// Files a restored VM's directory gets from the snapshot.
const (
	restoreStateFile = "restore-state"
	restoreKeyFile   = "restore-key"
)

// linkSnapshot links (or copies) what a restore needs from snap into the VM directory: its
// layers, for as long as the VM lives, and its state and key, until the VM has its new
// identity. It returns the shim's restore spec and the VM's disk chain.
func linkSnapshot(dir string, snap snapshot.Snapshot, image string) (shim.Restore, []string, error) {
	backing := []string{image}
	for i, layer := range snap.LayerPaths() {
		dst := filepath.Join(dir, snapshot.LayerFile(i))
		if err := snapshot.LinkOrCopy(layer, dst); err != nil {
			return shim.Restore{}, nil, err
		}
		backing = append(backing, dst)
	}
	r := shim.Restore{State: filepath.Join(dir, restoreStateFile), Key: filepath.Join(dir, restoreKeyFile), HostKey: snap.HostKey}
	for src, dst := range map[string]string{snap.Path(snap.State): r.State, snap.Path(snap.Key): r.Key} {
		if err := snapshot.LinkOrCopy(src, dst); err != nil {
			return shim.Restore{}, nil, err
		}
	}
	return r, backing, nil
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
