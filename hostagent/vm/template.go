// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

// TemplateSpec names a template: there is one per base image and VM size.
type TemplateSpec struct {
	ImagePath string
	CPUs      int
	MemoryMiB int
	DiskMiB   int
}

func templateSpecOf(s LaunchSpec) TemplateSpec {
	return TemplateSpec{ImagePath: s.ImagePath, CPUs: s.CPUs, MemoryMiB: s.MemoryMiB, DiskMiB: s.DiskMiB}
}

// Template is a template snapshot in the cache: a VM booted once from the image and saved as
// soon as its guest was ready.
type Template struct {
	// Dir is the template's directory, CacheDir/templates/KEY.
	Dir string
	// Key is the hash of everything the template depends on (see templateInputs).
	Key string
	// Built says that this call made the template, in BuildTime.
	Built     bool
	BuildTime time.Duration
	// Snapshot is the template's snapshot.
	Snapshot snapshot.Snapshot

	restore restoreSource
}

// templateInputs are what a template depends on; their hash is its key, so a change of any
// of them makes a new template.
type templateInputs struct {
	// Format changes when templates are made differently.
	Format     int    `json:"format"`
	Mode       string `json:"mode"`
	Backend    string `json:"backend"`
	Hypervisor string `json:"hypervisor"`
	QEMU       fileID `json:"qemu"`
	Accel      string `json:"accel"`
	TSCKHz     int    `json:"tsc_khz"`
	Kernel     fileID `json:"kernel"`
	// Initrd holds the guest init and the kernel modules; its content hash is in its name.
	Initrd    string `json:"initrd"`
	Image     fileID `json:"image"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	DiskMiB   int    `json:"disk_mib"`
}

// templateFormat is templateInputs.Format.
const templateFormat = 1

// slot is what a template is for; a newer template for the same slot replaces older ones.
func (in templateInputs) slot() string {
	return fmt.Sprintf("%s %d %d %d %s", in.Image.Path, in.CPUs, in.MemoryMiB, in.DiskMiB, in.Mode)
}

// fileID identifies a file's content. Large images are identified by name, size and change
// time (they are immutable, replaced whole by a rebuild); other files by a SHA-256 of their
// content.
type fileID struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime_ns,omitempty"`
	Inode  uint64 `json:"inode,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// templatesInputsFile holds a template's templateInputs, for people and for pruning.
const templateInputsFile = "inputs.json"

func templatesDir(cacheDir string) string { return filepath.Join(cacheDir, "templates") }

// Template returns the template for spec, making it first when there is none for the current
// inputs (image, kernel, initramfs with the guest init, QEMU, acceleration and size); an
// older template for the same image and size is then deleted. Concurrent callers, also in
// other processes, wait for one build.
func (m *Manager) Template(ctx context.Context, spec TemplateSpec) (Template, error) {
	if m.cfg.Templates == TemplatesOff {
		return Template{}, errors.New("vm: templates are off")
	}
	prep, err := m.prepared(ctx)
	if err != nil {
		return Template{}, err
	}
	setDefault(&spec.CPUs, m.cfg.CPUs)
	setDefault(&spec.MemoryMiB, m.cfg.MemoryMiB)
	setDefault(&spec.DiskMiB, m.cfg.DiskMiB)
	return m.template(ctx, prep, spec)
}

func (m *Manager) template(ctx context.Context, prep *prepared, spec TemplateSpec) (Template, error) {
	in, err := m.templateInputs(prep, spec)
	if err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	data, _ := json.Marshal(in) // plain fields cannot fail
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:8])
	if t, ok := m.templates.get(key); ok {
		return t, nil
	}
	dir := filepath.Join(templatesDir(m.cfg.CacheDir), key)
	unlock, err := fsutil.Lock(ctx, dir+".lock", func() {
		m.cfg.Logger.Info("waiting for another process to build the template", "template", dir)
	})
	if err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	defer unlock()
	t := Template{Dir: dir, Key: key}
	t.Snapshot, err = snapshot.Load(dir)
	if err != nil {
		start := time.Now()
		if t.Snapshot, err = m.buildTemplate(ctx, prep, spec, in, dir); err != nil {
			return Template{}, fmt.Errorf("template: %w", err)
		}
		t.Built, t.BuildTime = true, time.Since(start)
		m.pruneTemplates(in, key)
	}
	if t.restore, err = m.restoreSource(prep, t.Snapshot, spec.ImagePath); err != nil {
		return Template{}, fmt.Errorf("template: %w", err)
	}
	m.templates.put(key, t)
	return t, nil
}

// templateInputs collects what the template for spec depends on.
func (m *Manager) templateInputs(prep *prepared, spec TemplateSpec) (templateInputs, error) {
	in := templateInputs{
		Format: templateFormat, Mode: m.cfg.Templates, Backend: m.backend.Name(), Hypervisor: prep.hypervisor,
		Accel: prep.accel, TSCKHz: prep.tscKHz, Initrd: filepath.Base(prep.initrd),
		CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB, DiskMiB: spec.DiskMiB,
	}
	var err error
	if in.Image, err = statID(spec.ImagePath); err != nil {
		return in, fmt.Errorf("image: %w", err)
	}
	if in.Kernel, err = m.templates.contentID(prep.kernel.Vmlinux); err != nil {
		return in, fmt.Errorf("kernel: %w", err)
	}
	qemuPath, err := exec.LookPath(m.cfg.QEMUBinary)
	if err != nil {
		return in, err
	}
	if in.QEMU, err = statID(qemuPath); err != nil {
		return in, fmt.Errorf("qemu: %w", err)
	}
	return in, nil
}

// buildTemplate boots a VM from the image (its memory in a shared file for TemplatesShared)
// and saves it into dir once its guest is ready.
func (m *Manager) buildTemplate(ctx context.Context, prep *prepared, spec TemplateSpec, in templateInputs, dir string) (snapshot.Snapshot, error) {
	log := m.cfg.Logger.With("template", dir)
	log.Info("building template", "image", spec.ImagePath, "cpus", spec.CPUs, "memory_mib", spec.MemoryMiB)
	tmp := dir + ".build"
	if err := os.RemoveAll(tmp); err != nil { // left by a build that died (we hold the lock)
		return snapshot.Snapshot{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return snapshot.Snapshot{}, err
	}
	if err := os.RemoveAll(dir); err != nil { // an incomplete or unreadable template
		return snapshot.Snapshot{}, err
	}
	lspec := LaunchSpec{ID: "tpl-" + filepath.Base(dir), ImagePath: spec.ImagePath, CPUs: spec.CPUs,
		MemoryMiB: spec.MemoryMiB, DiskMiB: spec.DiskMiB}
	mach, err := m.start(ctx, prep, lspec, vnet.Policy{}, startOptions{sharedMemory: in.Mode == TemplatesShared})
	if err != nil {
		return snapshot.Snapshot{}, fmt.Errorf("boot: %w", err)
	}
	defer func() {
		if err := mach.Stop(context.WithoutCancel(ctx)); err != nil {
			log.Warn("stop template vm", "err", err)
		}
	}()
	snap, err := mach.Snapshot(ctx, tmp, SnapshotOptions{})
	if err != nil {
		return snapshot.Snapshot{}, err
	}
	data, _ := json.MarshalIndent(in, "", "  ") // plain fields cannot fail
	if err := fsutil.WriteFileAtomic(filepath.Join(tmp, templateInputsFile), data, 0o644); err != nil {
		return snapshot.Snapshot{}, errors.Join(err, snap.Remove())
	}
	if _, err := snap.MoveTo(dir); err != nil {
		return snapshot.Snapshot{}, errors.Join(err, snap.Remove())
	}
	snap, err = snapshot.Load(dir)
	if err != nil {
		return snapshot.Snapshot{}, err
	}
	size, _ := snap.Size()
	log.Info("template ready", "bytes", size, "paused_seconds", snap.PausedSeconds)
	return snap, nil
}

// pruneTemplates deletes the other templates for in's slot (older inputs). VMs running from
// them keep their links to the files they use.
func (m *Manager) pruneTemplates(in templateInputs, key string) {
	root := templatesDir(m.cfg.CacheDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == key || strings.Contains(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, e.Name(), templateInputsFile))
		if err != nil {
			continue
		}
		var other templateInputs
		if json.Unmarshal(data, &other) != nil || other.slot() != in.slot() {
			continue
		}
		m.cfg.Logger.Info("removing replaced template", "template", e.Name())
		m.templates.forget(e.Name())
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			m.cfg.Logger.Warn("remove template", "err", err)
		}
	}
}

// dropTemplate forgets and deletes a template that failed to restore; the next Launch builds it
// again.
func (m *Manager) dropTemplate(t Template) {
	m.templates.forget(t.Key)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := fsutil.Lock(ctx, t.Dir+".lock", nil)
	if err != nil {
		return
	}
	defer unlock()
	if err := os.RemoveAll(t.Dir); err != nil {
		m.cfg.Logger.Warn("remove template", "err", err)
	}
}

// templates is the Manager's memory of templates: the ones found or built (so a Launch need
// not look at the disk), the template memories loaded into sealed files, and content hashes.
type templates struct {
	mu       sync.Mutex
	known    map[string]Template
	memories map[string]*os.File // by snapshot directory and creation time
	hashes   map[fileID]string   // by name, size, change time and inode
}

func newTemplates() templates {
	return templates{known: map[string]Template{}, memories: map[string]*os.File{}, hashes: map[fileID]string{}}
}

func (ts *templates) get(key string) (Template, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.known[key]
	return t, ok
}

func (ts *templates) put(key string, t Template) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t.Built, t.BuildTime = false, 0
	ts.known[key] = t
}

// forget drops a template and closes its memory (VMs using it keep their own mapping).
func (ts *templates) forget(key string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.known[key]
	delete(ts.known, key)
	if ok && t.restore.memory != nil {
		delete(ts.memories, memoryKey(t.Snapshot))
		t.restore.memory.Close()
	}
}

func memoryKey(s snapshot.Snapshot) string { return s.Dir + "@" + s.Created.String() }

// memory returns the snapshot's memory as a sealed file, loading it on first use (see
// loadMemory).
func (ts *templates) memory(s snapshot.Snapshot) (*os.File, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	k := memoryKey(s)
	if f, ok := ts.memories[k]; ok {
		return f, nil
	}
	f, err := loadMemory(s.Path(s.Memory))
	if err != nil {
		return nil, err
	}
	ts.memories[k] = f
	return f, nil
}

// contentID identifies path by its SHA-256, computed once per Manager for a given name, size,
// change time and inode.
func (ts *templates) contentID(path string) (fileID, error) {
	id, err := statID(path)
	if err != nil {
		return fileID{}, err
	}
	ts.mu.Lock()
	sum, ok := ts.hashes[id]
	ts.mu.Unlock()
	if !ok {
		if sum, err = hashFile(path); err != nil {
			return fileID{}, err
		}
		ts.mu.Lock()
		ts.hashes[id] = sum
		ts.mu.Unlock()
	}
	return fileID{Path: path, Size: id.Size, SHA256: sum}, nil
}

func statID(path string) (fileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{Path: path, Size: st.Size(), MTime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.Inode = sys.Ino
	}
	return id, nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
