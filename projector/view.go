// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/waggle-dev/waggle/events"
)

// Host states in the view. A host that environments were placed on before it announced itself
// has the empty state.
const (
	HostLive    = "live"
	HostFailed  = "failed"
	HostDrained = "drained"
	HostLeft    = "left"
)

// Env is one environment as the view sees it: the fold of its events (events.Env) and when it
// expires if it stays idle.
type Env struct {
	events.Env
	// Expires is LastActive + TTL while the environment runs, zero otherwise.
	Expires time.Time `json:"expires,omitzero"`
}

// Host is one VM host as the view sees it. Allocated and EnvCount sum its live environments
// (events.Live).
type Host struct {
	ID        string           `json:"id"`
	Address   string           `json:"address,omitempty"`
	Capacity  events.HostInfo  `json:"capacity"`
	Allocated events.Resources `json:"allocated"`
	State     string           `json:"state"` // HostLive, HostFailed, HostDrained, HostLeft
	EnvCount  int              `json:"env_count"`
	Joined    time.Time        `json:"joined,omitzero"`
	// Seq is the stream sequence of the last event that changed this host (its own lifecycle
	// events and the environment events that changed its allocation).
	Seq uint64 `json:"seq"`
}

// View is the fold target: every environment and host, and the stream sequence of the last
// event folded in.
type View struct {
	Envs  map[string]*Env  `json:"envs"`
	Hosts map[string]*Host `json:"hosts"`
	Seq   uint64           `json:"seq"`
}

// NewView is the empty view (the state before the first event).
func NewView() *View {
	return &View{Envs: map[string]*Env{}, Hosts: map[string]*Host{}}
}

// ErrNotApplicable wraps the reason an event could not be folded (an illegal transition, data
// that does not decode). The view is then unchanged apart from its sequence, so every user of
// the fold (live, rebuild, replay) agrees on the result.
var ErrNotApplicable = errors.New("event not applicable")

// Apply folds one event into v. It is idempotent by sequence: an event whose Seq is non-zero
// and not above v.Seq changes nothing. An event that cannot be folded gives an error wrapping
// ErrNotApplicable and leaves v as it was, apart from v.Seq.
func Apply(v *View, ev *events.Event) error {
	if ev.Seq != 0 && ev.Seq <= v.Seq {
		return nil
	}
	if ev.Seq > v.Seq {
		v.Seq = ev.Seq
	}
	if v.Envs == nil {
		v.Envs = map[string]*Env{}
	}
	if v.Hosts == nil {
		v.Hosts = map[string]*Host{}
	}
	switch kindOf(ev) {
	case kindEnv:
		prev := v.Envs[ev.Env]
		next, err := nextEnv(prev, ev)
		if err != nil {
			return err
		}
		if hostID, res, n := allocation(prev, next); n != 0 {
			v.Hosts[hostID] = allocate(v.Hosts[hostID], hostID, res, n, ev.Seq)
		}
		v.Envs[ev.Env] = next
	case kindHost:
		next, err := nextHost(v.Hosts[ev.Host], ev)
		if err != nil {
			return err
		}
		v.Hosts[ev.Host] = next
	}
	return nil
}

type kind int

const (
	kindAudit kind = iota
	kindEnv
	kindHost
)

// kindOf tells which aggregate an event belongs to, as events.AggregateOf does.
func kindOf(ev *events.Event) kind {
	switch {
	case ev.Env != "":
		return kindEnv
	case ev.Host != "":
		return kindHost
	}
	return kindAudit
}

func notApplicable(ev *events.Event, err error) error {
	return fmt.Errorf("%w: seq %d (%s %s): %w", ErrNotApplicable, ev.Seq, ev.Type, ev.ID, err)
}

// nextEnv is the environment after ev; prev (nil for a new one) is not modified.
func nextEnv(prev *Env, ev *events.Event) (*Env, error) {
	var n Env
	if prev != nil {
		n = *prev
	}
	if err := n.Apply(ev); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotApplicable, err)
	}
	n.Expires = time.Time{}
	if n.State == events.StateRunning && n.TTLSeconds > 0 {
		n.Expires = n.LastActive.Add(n.TTL())
	}
	return &n, nil
}

// nextHost is the host after one of its lifecycle events; prev (nil if unknown) is not modified.
func nextHost(prev *Host, ev *events.Event) (*Host, error) {
	n := Host{ID: ev.Host}
	if prev != nil {
		n = *prev
	}
	switch ev.Type {
	case events.HostJoined:
		var d events.HostInfo
		if err := ev.DecodeData(&d); err != nil {
			return nil, notApplicable(ev, err)
		}
		n.State, n.Address, n.Capacity, n.Joined = HostLive, d.Address, d, ev.Time.UTC()
	case events.HostFailed:
		n.State = HostFailed
	case events.HostDrained:
		n.State = HostDrained
	case events.HostLeft:
		n.State = HostLeft
	default:
		return nil, notApplicable(ev, fmt.Errorf("unknown host event type %q", ev.Type))
	}
	n.Seq = ev.Seq
	return &n, nil
}

// allocation is how an environment's move from prev to next changes its host's allocation:
// the host, the resources, and +1 (became live), -1 (stopped being live) or 0.
func allocation(prev, next *Env) (string, events.Resources, int) {
	wasLive := prev != nil && events.Live(prev.State)
	isLive := events.Live(next.State)
	switch {
	case isLive && !wasLive:
		return next.Host, next.Resources, 1
	case wasLive && !isLive:
		return prev.Host, prev.Resources, -1
	}
	return "", events.Resources{}, 0
}

// allocate is host h (nil: not known yet) with n environments of res added (n < 0: removed)
// by the event at seq.
func allocate(h *Host, id string, res events.Resources, n int, seq uint64) *Host {
	next := Host{ID: id}
	if h != nil {
		next = *h
	}
	next.EnvCount += n
	next.Allocated.CPUs += n * res.CPUs
	next.Allocated.MemoryMiB += n * res.MemoryMiB
	next.Allocated.DiskMiB += n * res.DiskMiB
	next.Seq = seq
	return &next
}

// Hash is a stable digest of the view's environments and hosts (not of View.Seq, so trailing
// events that change nothing, such as audit digests, do not change it). It does not depend on
// map order: entries are hashed sorted by id.
func (v *View) Hash() string {
	h := sha256.New()
	write := func(tag string, id string, val any) {
		raw, err := json.Marshal(val)
		if err != nil {
			panic(fmt.Sprintf("projector: encoding a view entry cannot fail: %v", err))
		}
		fmt.Fprintf(h, "%s %s %d\n", tag, id, len(raw))
		h.Write(raw)
	}
	for _, id := range sortedKeys(v.Envs) {
		write("env", id, v.Envs[id])
	}
	for _, id := range sortedKeys(v.Hosts) {
		write("host", id, v.Hosts[id])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
