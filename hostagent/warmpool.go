// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/waggle-dev/waggle/events"
)

// warmIDPrefix starts the VM id of every pool VM; a claimed one keeps its id, and the claims
// directory maps the environment to it.
const warmIDPrefix = "warm-"

// refillRetry is the pause after a failed pool boot.
const refillRetry = 5 * time.Second

// warmPool keeps WarmPool pre-booted VMs per runtime of the default size. Pool VMs hold a
// reservation like environments do; a placement that matches takes one over, reservation and
// all. Its state is guarded by Agent.mu.
type warmPool struct {
	a       *Agent
	ready   map[string][]Machine
	booting int
	wake    chan struct{}
}

func newWarmPool(a *Agent) *warmPool {
	return &warmPool{a: a, ready: map[string][]Machine{}, wake: make(chan struct{}, 1)}
}

func (p *warmPool) claimsDir() string { return filepath.Join(p.a.cfg.DataDir, "claims") }

// take hands a ready VM of runtime to e if res is the pool's size; e inherits its reservation.
func (p *warmPool) take(e *envEntry, runtime string, res events.Resources) Machine {
	a := p.a
	a.mu.Lock()
	defer a.mu.Unlock()
	vms := p.ready[runtime]
	if a.draining || len(vms) == 0 || res != a.cfg.DefaultResources {
		return nil
	}
	m := vms[len(vms)-1]
	p.ready[runtime] = vms[:len(vms)-1]
	e.res, e.reserved = res, true
	p.signal()
	return m
}

// evictOne stops one idle pool VM to free its capacity for a placement; false if none is idle.
func (p *warmPool) evictOne() bool {
	a := p.a
	a.mu.Lock()
	var victim Machine
	for rt, vms := range p.ready {
		if len(vms) > 0 {
			victim = vms[len(vms)-1]
			p.ready[rt] = vms[:len(vms)-1]
			a.addLocked(a.cfg.DefaultResources, -1)
			break
		}
	}
	a.mu.Unlock()
	if victim == nil {
		return false
	}
	a.goTask(func() { a.stopQuietly(context.Background(), victim) })
	return true
}

func (p *warmPool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run refills the pool, one boot at a time, until ctx ends; then it stops the idle pool VMs.
func (p *warmPool) run(ctx context.Context) {
	a := p.a
	defer p.drain()
	if a.cfg.WarmPool == 0 {
		return
	}
	t := time.NewTicker(refillRetry)
	defer t.Stop()
	for {
		for p.refillOne(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-t.C:
		}
	}
}

// refillOne boots one pool VM if a runtime is short and capacity allows; false if nothing to do.
func (p *warmPool) refillOne(ctx context.Context) bool {
	a := p.a
	res := a.cfg.DefaultResources
	a.mu.Lock()
	runtime := ""
	for _, rt := range a.cfg.WarmRuntimes {
		if len(p.ready[rt]) < a.cfg.WarmPool {
			runtime = rt
			break
		}
	}
	if runtime == "" || a.draining || ctx.Err() != nil || a.fitsLocked(res) != "" {
		a.mu.Unlock()
		return false
	}
	a.addLocked(res, 1)
	p.booting++
	a.mu.Unlock()

	m, err := a.launch(ctx, LaunchSpec{ID: warmIDPrefix + strings.ToLower(ulid.Make().String()), Runtime: runtime, Resources: res,
		Lease: a.leaseFor(a.cfg.DefaultTTL)})
	a.mu.Lock()
	p.booting--
	if err == nil && !a.draining {
		p.ready[runtime] = append(p.ready[runtime], m)
		a.mu.Unlock()
		a.logger.Debug("warm pool: VM ready", "runtime", runtime, "vm", m.ID())
		return true
	}
	a.addLocked(res, -1)
	a.mu.Unlock()
	if err != nil {
		a.logger.Warn("warm pool: boot failed", "runtime", runtime, "err", err)
		return false
	}
	a.stopQuietly(context.Background(), m)
	return false
}

// drain stops every idle pool VM.
func (p *warmPool) drain() {
	a := p.a
	a.mu.Lock()
	var vms []Machine
	for rt, list := range p.ready {
		vms = append(vms, list...)
		a.addLocked(a.cfg.DefaultResources, -len(list))
		delete(p.ready, rt)
	}
	a.mu.Unlock()
	for _, m := range vms {
		a.stopQuietly(context.Background(), m)
	}
}

// claim records that env runs on pool VM m, so a restarted agent can adopt it.
func (p *warmPool) claim(env string, m Machine) error {
	dir := p.claimsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("warm pool: claim: %w", err)
	}
	tmp := filepath.Join(dir, "."+env)
	if err := os.WriteFile(tmp, []byte(m.ID()), 0o644); err != nil {
		return fmt.Errorf("warm pool: claim: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, env)); err != nil {
		return fmt.Errorf("warm pool: claim: %w", err)
	}
	return nil
}

// unclaim forgets env's pool VM.
func (p *warmPool) unclaim(env string) {
	err := os.Remove(filepath.Join(p.claimsDir(), env))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.a.logger.Warn("warm pool: unclaim", "env", env, "err", err)
	}
}

// claims maps a pool VM's id to the environment that claimed it.
func (p *warmPool) claims() (map[string]string, error) {
	entries, err := os.ReadDir(p.claimsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("warm pool: read claims: %w", err)
	}
	out := map[string]string{}
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), ".") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(p.claimsDir(), de.Name()))
		if err != nil {
			return nil, fmt.Errorf("warm pool: read claims: %w", err)
		}
		out[strings.TrimSpace(string(raw))] = de.Name()
	}
	return out, nil
}
