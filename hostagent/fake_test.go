// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waggle-dev/waggle/events/hostrpc"
)

// fakeMachines is an in-memory VM layer: VMs are maps of files, exec echoes its input.
type fakeMachines struct {
	mu        sync.Mutex
	vms       map[string]*fakeVM
	launches  atomic.Int32
	bootDelay time.Duration
	bootErr   error
	gate      chan struct{}      // "gate" commands wait until it is closed
	paused    map[string]*fakeVM // saved by Pause, by id
	resumes   atomic.Int32
	// dir, when set, is where Pause also writes a paused VM's files (one JSON file in
	// PausedDir), which Resume reads when it has no paused VM of that id (one fetched from
	// another host's snapshot).
	dir string
}

func newFakeMachines() *fakeMachines {
	return &fakeMachines{vms: map[string]*fakeVM{}, gate: make(chan struct{}), paused: map[string]*fakeVM{}}
}

// Pause keeps the VM's files aside and stops it.
func (f *fakeMachines) Pause(ctx context.Context, m Machine) (Paused, error) {
	vm := m.(*fakeVM)
	if err := vm.Stop(ctx); err != nil {
		return Paused{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused[vm.id] = vm
	p := Paused{Bytes: 1 << 20, Location: "host:fake/" + vm.id, Took: time.Millisecond}
	if f.dir != "" {
		dir := filepath.Join(f.dir, vm.id)
		vm.mu.Lock()
		data, err := json.Marshal(vm.files)
		vm.mu.Unlock()
		if err := errors.Join(err, os.MkdirAll(dir, 0o700)); err != nil {
			return Paused{}, err
		}
		file := filepath.Join(dir, fakeSnapshotFile)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			return Paused{}, err
		}
		p.Files = []string{file}
	}
	return p, nil
}

// fakeSnapshotFile names the file of a fake snapshot in its PausedDir.
const fakeSnapshotFile = "files.json"

func (f *fakeMachines) PausedDir(id string) (string, error) {
	if f.dir == "" {
		return "", errors.New("fake: no snapshot directory")
	}
	return filepath.Join(f.dir, id), nil
}

// Resume starts a VM with the files of the paused one.
func (f *fakeMachines) Resume(_ context.Context, spec LaunchSpec) (Machine, error) {
	f.mu.Lock()
	old, ok := f.paused[spec.ID]
	delete(f.paused, spec.ID)
	f.mu.Unlock()
	if !ok {
		return f.resumeFromDir(spec)
	}
	f.resumes.Add(1)
	vm := f.add(spec.ID, old.runtime)
	old.mu.Lock()
	vm.files, vm.lease = old.files, spec.Lease
	old.mu.Unlock()
	return vm, nil
}

// resumeFromDir starts a VM with the files of a snapshot in PausedDir (and removes it).
func (f *fakeMachines) resumeFromDir(spec LaunchSpec) (Machine, error) {
	dir, err := f.PausedDir(spec.ID)
	if err != nil {
		return nil, fmt.Errorf("fake: %s was not paused: %w", spec.ID, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, fakeSnapshotFile))
	if err != nil {
		return nil, fmt.Errorf("fake: %s was not paused: %w", spec.ID, err)
	}
	var files map[string][]byte
	if err := json.Unmarshal(data, &files); err != nil {
		return nil, err
	}
	f.resumes.Add(1)
	vm := f.add(spec.ID, spec.Runtime)
	vm.mu.Lock()
	vm.files, vm.lease = files, spec.Lease
	vm.mu.Unlock()
	return vm, os.RemoveAll(dir)
}

// Fork starts a VM with a copy of src's files.
func (f *fakeMachines) Fork(_ context.Context, src Machine, spec LaunchSpec) (Machine, error) {
	old := src.(*fakeVM)
	vm := f.add(spec.ID, old.runtime)
	old.mu.Lock()
	defer old.mu.Unlock()
	for p, data := range old.files {
		vm.files[p] = slices.Clone(data)
	}
	vm.lease = spec.Lease
	return vm, nil
}

func (f *fakeMachines) DropPaused(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.paused, id)
	return nil
}

// isPaused reports whether Pause saved id and nothing resumed or dropped it since.
func (f *fakeMachines) isPaused(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.paused[id]
	return ok
}

func (f *fakeMachines) Launch(ctx context.Context, spec LaunchSpec) (Machine, error) {
	f.launches.Add(1)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(f.bootDelay):
	}
	if f.bootErr != nil {
		return nil, f.bootErr
	}
	vm := f.add(spec.ID, spec.Runtime)
	vm.lease = spec.Lease
	return vm, nil
}

func (f *fakeMachines) add(id, runtime string) *fakeVM {
	vm := &fakeVM{id: id, runtime: runtime, owner: f, files: map[string][]byte{}}
	vm.alive.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.vms[id]; dup {
		panic("fake: two VMs with id " + id)
	}
	f.vms[id] = vm
	return vm
}

func (f *fakeMachines) Scan(context.Context) ([]Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Machine
	for _, vm := range f.vms {
		out = append(out, vm)
	}
	return out, nil
}

// vm is the running VM id.
func (f *fakeMachines) vm(id string) *fakeVM {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vms[id]
}

// running lists the ids of the VMs still running, sorted.
func (f *fakeMachines) running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.vms {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

type fakeVM struct {
	id, runtime string
	owner       *fakeMachines
	alive       atomic.Bool
	mu          sync.Mutex
	files       map[string][]byte
	execs       []ExecSpec
	holding     atomic.Int32  // "hold" commands running
	lease       time.Duration // launched with or last renewed to
	renewals    int
	renewErr    error // what Renew answers (the lease ran out)
}

func (v *fakeVM) ID() string    { return v.id }
func (v *fakeVM) IsAlive() bool { return v.alive.Load() }

func (v *fakeVM) Renew(_ context.Context, lease time.Duration) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.renewErr != nil {
		return v.renewErr
	}
	v.lease, v.renewals = lease, v.renewals+1
	return nil
}

// leased is the VM's lease and how often it was renewed.
func (v *fakeVM) leased() (time.Duration, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lease, v.renewals
}

func (v *fakeVM) Stop(context.Context) error {
	v.alive.Store(false)
	v.owner.mu.Lock()
	delete(v.owner.vms, v.id)
	v.owner.mu.Unlock()
	return nil
}

// Exec echoes the code (stdin, or the program for argv's interpreter) to stdout and argv to
// stderr, streaming both to spec's writers; code "exit N" exits with N, code starting with
// "hold" blocks after its output until ctx ends, code "gate" blocks (counted in holding) until
// the machines' gate is closed, and code "drip N" then writes "tick I\n" to stdout N times,
// one every 50 ms.
func (v *fakeVM) Exec(ctx context.Context, spec ExecSpec) (ExecResult, error) {
	if !v.IsAlive() {
		return ExecResult{}, errors.New("fake: VM stopped")
	}
	v.mu.Lock()
	v.execs = append(v.execs, spec)
	v.mu.Unlock()
	src := spec.Stdin
	if spec.Program != nil {
		src = spec.Program
	}
	res := ExecResult{Stdout: src, Stderr: []byte(strings.Join(spec.Argv, " ")), Duration: time.Millisecond}
	var code int
	if _, err := fmt.Sscanf(string(src), "exit %d", &code); err == nil {
		res.ExitCode = code
	}
	if slices.Contains(spec.Argv, "no-such-package") { // as pip says it
		res.ExitCode, res.Stderr = 1, []byte("ERROR: No matching distribution found for no-such-package\n")
	}
	if len(res.Stdout) > spec.MaxOutput {
		res.Stdout, res.Truncated = res.Stdout[:spec.MaxOutput], true
	}
	for _, s := range []struct {
		w    io.Writer
		data []byte
	}{{spec.Stdout, res.Stdout}, {spec.Stderr, res.Stderr}} {
		if s.w != nil {
			_, _ = s.w.Write(s.data)
		}
	}
	if string(src) == "gate" {
		v.holding.Add(1)
		defer v.holding.Add(-1)
		select {
		case <-v.owner.gate:
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	var ticks int
	if _, err := fmt.Sscanf(string(src), "drip %d", &ticks); err == nil {
		for i := range ticks {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			tick := fmt.Appendf(nil, "tick %d\n", i)
			res.Stdout = append(res.Stdout, tick...)
			if spec.Stdout != nil {
				_, _ = spec.Stdout.Write(tick)
			}
		}
	}
	if strings.HasPrefix(string(src), "hold") {
		v.holding.Add(1)
		defer v.holding.Add(-1)
		<-ctx.Done()
		res.ExitCode = -1
		return res, ctx.Err()
	}
	return res, nil
}

func (v *fakeVM) WriteFile(_ context.Context, path string, data []byte, _ uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.files[path] = append([]byte(nil), data...)
	return nil
}

func (v *fakeVM) ReadFile(_ context.Context, path string, max int64) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	data, ok := v.files[path]
	if !ok {
		return nil, ErrNotFound
	}
	if int64(len(data)) > max {
		return nil, ErrTooLarge
	}
	return data, nil
}

func (v *fakeVM) ListFiles(_ context.Context, dir string, _ bool, max int) ([]hostrpc.FileInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []hostrpc.FileInfo
	for p, data := range v.files {
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok && len(out) < max {
			out = append(out, hostrpc.FileInfo{Name: rel, Size: int64(len(data)), Mode: "-rw-r--r--"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
