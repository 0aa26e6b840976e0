// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// ErrNotFound is returned for an environment the view does not hold.
var ErrNotFound = errors.New("projector: not found")

// resolveEvery is how long a Reader trusts its idea of the live generation; a rebuild keeps the
// previous generation until the next one, so a reader this far behind still reads a whole view.
const resolveEvery = time.Second

// Reader queries the view in KV. It is safe for concurrent use. Reads come from the live
// generation; each value carries the sequence it reflects (Env.Seq, Host.Seq), and Freshness
// is the sequence the whole view reflects. When no projector has run yet, the view is empty.
type Reader struct {
	js jetstream.JetStream

	mu       sync.Mutex
	gen      *genHandles
	resolved time.Time
}

type genHandles struct {
	Generation
	meta, envs, hosts jetstream.KeyValue
}

// NewReader is a reader over the view's buckets reachable through js.
func NewReader(js jetstream.JetStream) (*Reader, error) {
	if js == nil {
		return nil, errors.New("projector: NewReader: nil JetStream")
	}
	return &Reader{js: js}, nil
}

// current is the live generation's buckets, or nil when there is no view yet.
func (r *Reader) current(ctx context.Context) (*genHandles, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != nil && time.Since(r.resolved) < resolveEvery {
		return r.gen, nil
	}
	meta, err := r.js.KeyValue(ctx, events.ViewBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("projector: open %s: %w", events.ViewBucket, err)
	}
	g, _, err := currentGeneration(ctx, meta)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.gen != nil && r.gen.Gen == g.Gen {
		r.resolved = time.Now()
		return r.gen, nil
	}
	h := &genHandles{Generation: g, meta: meta}
	if h.envs, err = r.js.KeyValue(ctx, g.Envs); err != nil {
		return nil, fmt.Errorf("projector: open %s: %w", g.Envs, err)
	}
	if h.hosts, err = r.js.KeyValue(ctx, g.Hosts); err != nil {
		return nil, fmt.Errorf("projector: open %s: %w", g.Hosts, err)
	}
	r.gen, r.resolved = h, time.Now()
	return h, nil
}

// Generation is the live generation of the view (zero when there is none yet).
func (r *Reader) Generation(ctx context.Context) (Generation, error) {
	g, err := r.current(ctx)
	if err != nil || g == nil {
		return Generation{}, err
	}
	return g.Generation, nil
}

// Env is one environment; ErrNotFound when the view does not hold it.
func (r *Reader) Env(ctx context.Context, id string) (*Env, error) {
	g, err := r.current(ctx)
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, fmt.Errorf("%w: environment %s (no view yet)", ErrNotFound, id)
	}
	e, err := g.envs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil, fmt.Errorf("%w: environment %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("projector: get environment %s: %w", id, err)
	}
	var env Env
	if err := json.Unmarshal(e.Value(), &env); err != nil {
		return nil, fmt.Errorf("projector: decode environment %s: %w", id, err)
	}
	return &env, nil
}

// Envs is every environment, ordered by creation time.
func (r *Reader) Envs(ctx context.Context) ([]*Env, error) {
	return r.envsWhere(ctx, func(*Env) bool { return true })
}

// EnvsByTenant is every environment the tenant owns, ordered by creation time.
func (r *Reader) EnvsByTenant(ctx context.Context, tenant string) ([]*Env, error) {
	return r.envsWhere(ctx, func(e *Env) bool { return e.Owner == tenant })
}

// EnvsByHost is every environment placed on the host, ordered by creation time.
func (r *Reader) EnvsByHost(ctx context.Context, host string) ([]*Env, error) {
	return r.envsWhere(ctx, func(e *Env) bool { return e.Host == host })
}

func (r *Reader) envsWhere(ctx context.Context, keep func(*Env) bool) ([]*Env, error) {
	g, err := r.current(ctx)
	if err != nil || g == nil {
		return nil, err
	}
	all, err := readAll[Env](ctx, g.envs)
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(e *Env) bool { return !keep(e) })
	sortEnvs(out)
	return out, nil
}

func sortEnvs(envs []*Env) {
	slices.SortFunc(envs, func(a, b *Env) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
}

func sortHosts(hosts []*Host) {
	slices.SortFunc(hosts, func(a, b *Host) int { return cmp.Compare(a.ID, b.ID) })
}

// EnvList is the view's environments ordered by creation time.
func (v *View) EnvList() []*Env {
	out := slices.AppendSeq(make([]*Env, 0, len(v.Envs)), maps.Values(v.Envs))
	sortEnvs(out)
	return out
}

// HostList is the view's hosts ordered by id.
func (v *View) HostList() []*Host {
	out := slices.AppendSeq(make([]*Host, 0, len(v.Hosts)), maps.Values(v.Hosts))
	sortHosts(out)
	return out
}

// Hosts is every host, ordered by id.
func (r *Reader) Hosts(ctx context.Context) ([]*Host, error) {
	g, err := r.current(ctx)
	if err != nil || g == nil {
		return nil, err
	}
	hosts, err := readAll[Host](ctx, g.hosts)
	if err != nil {
		return nil, err
	}
	sortHosts(hosts)
	return hosts, nil
}

// Freshness is the stream sequence the view reflects: every event up to it is folded in.
func (r *Reader) Freshness(ctx context.Context) (uint64, error) {
	g, err := r.current(ctx)
	if err != nil || g == nil {
		return 0, err
	}
	seq, _, err := readApplied(ctx, g.meta, g.Gen)
	return seq, err
}

// View reads the whole view (environments, hosts and freshness) into memory, e.g. to Hash it.
// Seq is read first, so the view reflects at least that sequence.
func (r *Reader) View(ctx context.Context) (*View, error) {
	seq, err := r.Freshness(ctx)
	if err != nil {
		return nil, err
	}
	v := NewView()
	v.Seq = seq
	g, err := r.current(ctx)
	if err != nil || g == nil {
		return v, err
	}
	envs, err := readAll[Env](ctx, g.envs)
	if err != nil {
		return nil, err
	}
	hosts, err := readAll[Host](ctx, g.hosts)
	if err != nil {
		return nil, err
	}
	for _, e := range envs {
		v.Envs[e.ID] = e
	}
	for _, h := range hosts {
		v.Hosts[h.ID] = h
	}
	return v, nil
}
