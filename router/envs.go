// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/projector"
)

// Runtimes are the environment runtimes (and exec languages) a caller may ask for.
func Runtimes() []string { return []string{"python", "node", "shell"} }

func knownRuntime(rt string) bool { return slices.Contains(Runtimes(), rt) }

// EnvInfo is what a caller sees of one environment.
type EnvInfo struct {
	ID             string     `json:"environment_id"`
	Name           string     `json:"name"`
	Runtime        string     `json:"runtime"`
	Status         string     `json:"status"`
	Host           string     `json:"host"`
	CPUs           int        `json:"cpus"`
	MemoryMiB      int        `json:"memory_mib"`
	TimeoutMinutes int64      `json:"timeout_minutes"`
	CreatedAt      time.Time  `json:"created_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	LastActive     *time.Time `json:"last_active,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	BootMS         int64      `json:"boot_ms,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	// PausedAt and SnapshotBytes describe a paused environment's snapshot.
	PausedAt      *time.Time `json:"paused_at,omitempty"`
	SnapshotBytes int64      `json:"snapshot_bytes,omitempty"`
	// MovedTo is the environment this one runs on as (status moved: lost with its host while
	// paused, then resumed on another host); ResumedFrom is, on that one, the environment it
	// was.
	MovedTo     string `json:"moved_to,omitempty"`
	ResumedFrom string `json:"resumed_from,omitempty"`
}

// HistoryEntry is one event of an environment as get_environment shows it.
type HistoryEntry struct {
	Seq       uint64    `json:"seq"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	Principal string    `json:"principal"`
	Data      any       `json:"data,omitempty"`
}

// EnvDetail is an environment with its recent history.
type EnvDetail struct {
	EnvInfo
	Events  int            `json:"event_count"`
	History []HistoryEntry `json:"history"`
}

// historyLen is how many of the latest events get_environment shows.
const historyLen = 20

// ownerEntry is what never changes about an environment: where it lives and whose it is.
type ownerEntry struct {
	host, owner, runtime string
	expires              time.Time
}

// ownerCache keeps ownerEntry values for a while; losing it costs one view read.
type ownerCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]ownerEntry
}

// maxOwnerCache bounds the cache; when full it is dropped wholesale.
const maxOwnerCache = 10000

func (c *ownerCache) get(env string) (ownerEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[env]
	if !ok || time.Now().After(e.expires) {
		return ownerEntry{}, false
	}
	return e, true
}

func (c *ownerCache) put(env string, e ownerEntry) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxOwnerCache {
		c.m = map[string]ownerEntry{}
	}
	e.expires = time.Now().Add(c.ttl)
	c.m[env] = e
}

// owned finds an environment of the caller's tenant: from the cache, else the view, else (the
// view may lag behind a create on another replica) the event log. Unknown and foreign
// environments give the same not-found error.
func (r *Router) owned(ctx context.Context, p Principal, env string) (ownerEntry, error) {
	if events.ValidID(env) != nil {
		return ownerEntry{}, notFound(env)
	}
	e, ok := r.owners.get(env)
	if !ok {
		var err error
		e, err = r.findOwner(ctx, env)
		if err != nil {
			return ownerEntry{}, err
		}
		r.owners.put(env, e)
	}
	if e.owner != p.Tenant {
		return ownerEntry{}, notFound(env)
	}
	return e, nil
}

func (r *Router) findOwner(ctx context.Context, env string) (ownerEntry, error) {
	v, verr := r.view.Env(ctx, env)
	if verr == nil {
		return ownerEntry{host: v.Host, owner: v.Owner, runtime: v.Runtime}, nil
	}
	// Not in the view (or the view is unreadable): the log is authoritative.
	evs, _, err := r.log.Load(ctx, events.EnvAggregate("*", env))
	if err != nil {
		return ownerEntry{}, fmt.Errorf("load environment %s (view: %w): %w", env, verr, err)
	}
	if len(evs) == 0 || evs[0].Type != events.EnvRequested {
		return ownerEntry{}, notFound(env)
	}
	var req events.Requested
	if err := evs[0].DecodeData(&req); err != nil {
		return ownerEntry{}, err
	}
	return ownerEntry{host: evs[0].Host, owner: req.Owner, runtime: req.Runtime}, nil
}

// summarize folds an environment's events into what a caller sees.
func summarize(evs []*events.Event) (EnvInfo, error) {
	e, err := events.FoldEnv(evs)
	if err != nil {
		return EnvInfo{}, err
	}
	return envInfo(e), nil
}

// envInfo is what a caller sees of a folded environment.
func envInfo(e events.Env) EnvInfo {
	info := EnvInfo{ID: e.ID, Name: e.Name, Runtime: e.Runtime, Status: e.State, Host: e.Host,
		CPUs: e.Resources.CPUs, MemoryMiB: e.Resources.MemoryMiB, TimeoutMinutes: e.TTLSeconds / 60,
		CreatedAt: e.Created, StartedAt: timePtr(e.Started), LastActive: timePtr(e.LastActive),
		BootMS: e.BootMillis, LastError: e.LastError, MovedTo: e.MovedTo, ResumedFrom: e.ResumeOf}
	if e.State == events.StatePaused && e.Snapshot != nil {
		info.PausedAt, info.SnapshotBytes = timePtr(e.PausedAt), e.Snapshot.SnapshotBytes
	}
	return info
}

// eventTime is when an event was stored (server time), or its producer time if unknown.
func eventTime(ev *events.Event) time.Time {
	if !ev.Stored.IsZero() {
		return ev.Stored.UTC()
	}
	return ev.Time.UTC()
}

// List returns the caller's environments that are not over (destroyed, failed, rejected or
// lost), newest first.
func (r *Router) List(ctx context.Context, p Principal) ([]EnvInfo, error) {
	envs, err := r.view.EnvsByTenant(ctx, p.Tenant)
	if err != nil {
		return nil, fmt.Errorf("list environments of %s: %w", p.Tenant, err)
	}
	out := make([]EnvInfo, 0, len(envs))
	for _, e := range envs {
		if e.Owner != p.Tenant || events.Terminal(e.State) {
			continue
		}
		out = append(out, viewInfo(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

func viewInfo(e *projector.Env) EnvInfo {
	info := envInfo(e.Env)
	info.ExpiresAt = timePtr(e.Expires)
	return info
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// history is one of the caller's environments and its event history (authoritative).
func (r *Router) history(ctx context.Context, p Principal, env string) (ownerEntry, []*events.Event, error) {
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return own, nil, err
	}
	evs, _, err := r.log.Load(ctx, events.EnvAggregate(own.host, env))
	if err != nil {
		return own, nil, fmt.Errorf("load environment %s: %w", env, err)
	}
	if len(evs) == 0 {
		return own, nil, notFound(env)
	}
	return own, evs, nil
}

// Get returns one of the caller's environments, read from its event history (authoritative),
// with its latest events.
func (r *Router) Get(ctx context.Context, p Principal, env string) (*EnvDetail, error) {
	_, evs, err := r.history(ctx, p, env)
	if err != nil {
		return nil, err
	}
	info, err := summarize(evs)
	if err != nil {
		return nil, err
	}
	if v, err := r.view.Env(ctx, env); err == nil {
		info.ExpiresAt = timePtr(v.Expires)
		if info.LastActive == nil {
			info.LastActive = timePtr(v.LastActive)
		}
	}
	d := &EnvDetail{EnvInfo: info, Events: len(evs)}
	for _, ev := range evs[max(0, len(evs)-historyLen):] {
		h := HistoryEntry{Seq: ev.Seq, Type: ev.Type, Time: eventTime(ev), Principal: ev.Principal}
		if len(ev.Data) > 0 {
			var data any
			if err := ev.DecodeData(&data); err == nil {
				h.Data = data
			}
		}
		d.History = append(d.History, h)
	}
	return d, nil
}

// DestroyResult is the outcome of destroy_environment.
type DestroyResult struct {
	ID      string `json:"environment_id"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// conflictRetries bounds how often a writer re-folds an aggregate another writer moved.
const conflictRetries = 5

// Destroy asks the owning host to destroy one of the caller's environments and waits (bounded)
// until it is gone. Destroying an environment that is already going or gone is not an error.
func (r *Router) Destroy(ctx context.Context, p Principal, env string) (*DestroyResult, error) {
	own, err := r.owned(ctx, p, env)
	if err != nil {
		return nil, err
	}
	agg := events.EnvAggregate(own.host, env)
	var from uint64
	for attempt := 0; ; attempt++ {
		evs, head, err := r.log.Load(ctx, agg)
		if err != nil {
			return nil, fmt.Errorf("load environment %s: %w", env, err)
		}
		e, err := events.FoldEnv(evs)
		if err != nil {
			return nil, err
		}
		state := e.State
		if events.Terminal(state) {
			return &DestroyResult{ID: env, Status: state,
				Message: fmt.Sprintf("environment %s is already %s; nothing to destroy", env, state)}, nil
		}
		if state == events.StateDestroying {
			from = head.Seq
			break
		}
		if !e.Allows(events.EnvDestroyRequested) {
			return nil, userErr(KindNotRunning, "environment %s is %s and cannot be destroyed yet; try again in a moment", env, state)
		}
		ev, err := events.NewEnvEvent(own.host, env, events.EnvDestroyRequested, p.String(),
			events.DestroyRequested{By: p.String(), Reason: events.ReasonUser})
		if err != nil {
			return nil, err
		}
		ev.Correlation = RequestID(ctx)
		newHead, err := r.log.Append(ctx, ev, head)
		if errors.Is(err, events.ErrConflict) && attempt < conflictRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("append destroy_requested for %s: %w", env, err)
		}
		from = newHead.Seq
		break
	}
	end, err := r.await(ctx, own.host, env, from, r.cfg.DestroyTimeout,
		events.EnvDestroyed, events.EnvLost, events.EnvFailed)
	if err != nil {
		return nil, err
	}
	if end == nil {
		return &DestroyResult{ID: env, Status: events.StateDestroying,
			Message: fmt.Sprintf("environment %s is being destroyed by host %s (not finished after %s)", env, own.host, r.cfg.DestroyTimeout)}, nil
	}
	return &DestroyResult{ID: env, Status: events.StateDestroyed,
		Message: fmt.Sprintf("Environment %s has been destroyed", env)}, nil
}

// errStop ends a Follow once the awaited event arrived.
var errStop = errors.New("stop following")

// await follows an environment's events from seq on until one of types arrives (returned) or
// timeout passes (nil, nil). A caller that goes away ends the wait with its context's error.
func (r *Router) await(ctx context.Context, host, env string, seq uint64, timeout time.Duration, types ...string) (*events.Event, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var got *events.Event
	err := r.log.Watch(wctx, events.EnvAggregate(host, env), seq, func(ev *events.Event) error {
		for _, t := range types {
			if ev.Type == t {
				got = ev
				return errStop
			}
		}
		return nil
	})
	switch {
	case got != nil:
		return got, nil
	case err != nil && !errors.Is(err, errStop):
		return nil, fmt.Errorf("follow environment %s: %w", env, err)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, nil
}
