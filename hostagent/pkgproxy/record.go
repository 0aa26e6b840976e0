// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package pkgproxy

import (
	"slices"
	"sync"

	"github.com/waggle-dev/waggle/events"
)

// Fetches is what one VM fetched through the proxy during a Recording.
type Fetches struct {
	// Files are the package files served whole, in order.
	Files []events.PackageFile
	// Failures are the upstream failures the VM's requests met (each once): package managers
	// often report an index they could not fetch as a package that does not exist.
	Failures []string
}

// Recording collects what one VM fetches between Record and Stop.
type Recording struct {
	p       *Proxy
	vm      string
	mu      sync.Mutex
	got     Fetches
	dropped int
}

// maxRecorded bounds the files, and the failures, one recording keeps.
const maxRecorded = 1000

// Record starts collecting what VM vm fetches. A nil Proxy records nothing.
func (p *Proxy) Record(vm string) *Recording {
	if p == nil {
		return nil
	}
	r := &Recording{p: p, vm: vm}
	p.recMu.Lock()
	p.recordings[vm] = append(p.recordings[vm], r)
	p.recMu.Unlock()
	return r
}

// Stop ends the recording and returns what it collected.
func (r *Recording) Stop() Fetches {
	if r == nil {
		return Fetches{}
	}
	p := r.p
	p.recMu.Lock()
	rs := slices.DeleteFunc(p.recordings[r.vm], func(x *Recording) bool { return x == r })
	if len(rs) == 0 {
		delete(p.recordings, r.vm)
	} else {
		p.recordings[r.vm] = rs
	}
	p.recMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dropped > 0 {
		p.logger.Warn("package files not recorded: too many", "vm", r.vm, "recorded", len(r.got.Files), "dropped", r.dropped)
	}
	return r.got
}

// each calls f with each recording of vm, locked.
func (p *Proxy) each(vm string, f func(r *Recording)) {
	p.recMu.Lock()
	rs := slices.Clone(p.recordings[vm])
	p.recMu.Unlock()
	for _, r := range rs {
		r.mu.Lock()
		f(r)
		r.mu.Unlock()
	}
}

// note adds a served file to the VM's recordings and logs it.
func (p *Proxy) note(vm string, f events.PackageFile) {
	p.logger.Info("package file served", "vm", vm, "manager", f.Manager, "name", f.Name, "version", f.Version,
		"bytes", f.Size, "cached", f.Cached)
	p.each(vm, func(r *Recording) {
		if len(r.got.Files) < maxRecorded {
			r.got.Files = append(r.got.Files, f)
		} else {
			r.dropped++
		}
	})
}

// noteFailure adds an upstream failure to the VM's recordings.
func (p *Proxy) noteFailure(vm, msg string) {
	p.each(vm, func(r *Recording) {
		if len(r.got.Failures) < maxRecorded && !slices.Contains(r.got.Failures, msg) {
			r.got.Failures = append(r.got.Failures, msg)
		}
	})
}
