// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/oklog/ulid/v2"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/projector"
)

// Destroy reasons of environments the router gives up on: one that did not start in time, and
// one whose caller went away before learning its id.
const (
	reasonBootTimeout = "boot_timeout"
	reasonCallerGone  = "caller_gone"
	// reasonMovedMeanwhile: a resume on another host found the paused environment moved by
	// another call meanwhile.
	reasonMovedMeanwhile = "moved_meanwhile"
)

// maxNameLen bounds an environment's name.
const maxNameLen = 64

// CreateRequest is what create_environment asks for; zero fields take the configured defaults.
type CreateRequest struct {
	Runtime   string
	Name      string
	TTL       time.Duration
	CPUs      int
	MemoryMiB int
	// IdempotencyKey, when set, makes a retried create return the environment the first one
	// created (for events.IdempotencyTTL, per tenant).
	IdempotencyKey string
	// OnTimeout is what the idle timeout does: events.OnTimeoutDestroy (default) or
	// events.OnTimeoutPause.
	OnTimeout string
	// ForkOf, when set, is the caller's environment the new one is a running copy of (see
	// Fork); it is placed on that environment's host.
	ForkOf string
	// ResumeOf, when set, is the caller's lost paused environment whose stored snapshot the new
	// one starts from (see Resume); it is placed on any live host.
	ResumeOf string
}

// normalize fills defaults and checks ranges, naming the allowed values in its errors.
func (r *Router) normalize(req CreateRequest) (CreateRequest, error) {
	c := r.cfg
	if !knownRuntime(req.Runtime) {
		return req, userErr(KindBadRequest, "unknown runtime %q: use one of %s", req.Runtime, strings.Join(Runtimes(), ", "))
	}
	if req.TTL == 0 {
		req.TTL = c.DefaultTTL
	}
	if req.TTL < time.Minute || req.TTL > c.MaxTTL {
		return req, userErr(KindBadRequest, "timeout_minutes %g is out of range: use 1 to %d", req.TTL.Minutes(), int(c.MaxTTL.Minutes()))
	}
	if req.CPUs == 0 {
		req.CPUs = c.DefaultCPUs
	}
	if req.CPUs < 1 || req.CPUs > c.MaxCPUs {
		return req, userErr(KindBadRequest, "cpus %d is out of range: use 1 to %d", req.CPUs, c.MaxCPUs)
	}
	if req.MemoryMiB == 0 {
		req.MemoryMiB = c.DefaultMemoryMiB
	}
	if req.MemoryMiB < c.MinMemoryMiB || req.MemoryMiB > c.MaxMemoryMiB {
		return req, userErr(KindBadRequest, "memory_mib %d is out of range: use %d to %d", req.MemoryMiB, c.MinMemoryMiB, c.MaxMemoryMiB)
	}
	switch req.OnTimeout {
	case "":
		req.OnTimeout = events.OnTimeoutDestroy
	case events.OnTimeoutDestroy, events.OnTimeoutPause:
	default:
		return req, userErr(KindBadRequest, "on_timeout %q is not known: use %s or %s", req.OnTimeout, events.OnTimeoutDestroy, events.OnTimeoutPause)
	}
	if len(req.Name) > maxNameLen || strings.IndexFunc(req.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return req, userErr(KindBadRequest, "name must be at most %d printable characters", maxNameLen)
	}
	return req, checkIdempotencyKey(req.IdempotencyKey)
}

// Create places a new environment for the caller on a live host with room, and waits until the
// host started it. A host that rejects the placement is left out and another one tried. With
// an idempotency key, a create retried (through any router) carries on the environment the
// key names instead of starting another (see claimedPlacement).
func (r *Router) Create(ctx context.Context, p Principal, req CreateRequest) (*EnvInfo, error) {
	req, err := r.normalize(req)
	if err != nil {
		return nil, err
	}
	tried := map[string]string{} // host -> why it rejected
	rejected := ""               // the environment the last attempt saw rejected
	for attempt := 0; attempt < r.cfg.PlaceAttempts; attempt++ {
		var pl placement
		if req.IdempotencyKey != "" {
			pl, err = r.claimedPlacement(ctx, p, req, tried, rejected)
		} else {
			pl, err = r.freshPlacement(ctx, p, req, tried)
		}
		if err != nil {
			return nil, err
		}
		info, why, err := r.placeOn(ctx, p, pl, req)
		pl.release()
		if err != nil {
			return nil, err
		}
		if why == "" {
			return info, nil
		}
		r.unreserve(ctx, p, pl.env)
		r.metrics.retries.Inc()
		r.logger.Info("placement rejected, trying another host", "env", pl.env, "host", pl.host, "reason", why,
			"request", RequestID(ctx))
		tried[pl.host], rejected = why, pl.env
	}
	return nil, userErr(KindNoCapacity, "no host accepted the environment: %s", describeRejections(tried))
}

// placement is one attempt of a create: the environment, the host it goes to, and what to
// call once the attempt is over.
type placement struct {
	env, host string
	release   func()
	// replay is set when another call with the same idempotency key chose this placement: its
	// environment may have events already.
	replay bool
}

// freshPlacement is a new environment, reserved for the caller's tenant, on the host
// chooseHost picks.
func (r *Router) freshPlacement(ctx context.Context, p Principal, req CreateRequest, tried map[string]string) (placement, error) {
	env := strings.ToLower(ulid.Make().String())
	if err := r.reserve(ctx, p, env, req.MemoryMiB); err != nil {
		return placement{}, err
	}
	hosts, err := r.view.Hosts(ctx)
	if err != nil {
		r.unreserve(ctx, p, env)
		return placement{}, fmt.Errorf("read hosts: %w", err)
	}
	host, release, err := r.chooseHost(hosts, req, tried)
	if err != nil {
		r.unreserve(ctx, p, env)
		return placement{}, err
	}
	return placement{env: env, host: host, release: release}, nil
}

func describeRejections(tried map[string]string) string {
	hosts := make([]string, 0, len(tried))
	for h := range tried {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		parts[i] = fmt.Sprintf("host %s rejected it (%s)", h, tried[h])
	}
	return strings.Join(parts, "; ")
}

// reserve reserves env for the caller's tenant within the tenant limits (none when both are 0).
func (r *Router) reserve(ctx context.Context, p Principal, env string, memoryMiB int) error {
	if r.cfg.MaxEnvsPerTenant <= 0 && r.cfg.MaxMemoryMiBPerTenant <= 0 {
		return nil
	}
	return r.tenants.reserve(ctx, p.Tenant, env, memoryMiB, r.cfg.MaxEnvsPerTenant, r.cfg.MaxMemoryMiBPerTenant)
}

// unreserve gives back env's reservation at once when it will never run (its host rejected
// it, no host had room); others are dropped when a later reserve finds them over.
func (r *Router) unreserve(ctx context.Context, p Principal, env string) {
	if r.cfg.MaxEnvsPerTenant <= 0 && r.cfg.MaxMemoryMiBPerTenant <= 0 {
		return
	}
	if err := r.tenants.release(context.WithoutCancel(ctx), p.Tenant, env); err != nil {
		r.logger.Warn("tenant reservation kept; a later create drops it", "env", env, "tenant", p.Tenant, "err", err)
	}
}

// chooseHost picks the live host with room that has the least memory allocated (counting the
// placements this replica has in flight), skipping hosts that already rejected this create,
// and counts the placement as in flight until release is called. Ties are broken at random so
// that replicas spread their placements. When no host has room, the error names what each
// host ran out of.
func (r *Router) chooseHost(hosts []*projector.Host, req CreateRequest, skip map[string]string) (host string, release func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var live []*projector.Host
	for _, h := range hosts {
		if h.State == projector.HostLive {
			live = append(live, h)
		}
	}
	if len(live) == 0 {
		return "", nil, userErr(KindNoHost, "no live host: no host agent has joined the cluster or all of them failed, left or were drained; start one (waggle hostagent) and try again")
	}
	rand.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	sort.SliceStable(live, func(i, j int) bool {
		ai, aj := live[i].Allocated.MemoryMiB+r.pending[live[i].ID], live[j].Allocated.MemoryMiB+r.pending[live[j].ID]
		if ai != aj {
			return ai < aj
		}
		return live[i].EnvCount < live[j].EnvCount
	})
	full := map[string]string{} // host -> what it ran out of
	for _, h := range live {
		if _, done := skip[h.ID]; done {
			continue
		}
		if lack := r.shortfallLocked(h, req); lack != "" {
			full[h.ID] = lack
			continue
		}
		return h.ID, r.reserveLocked(h.ID, req.MemoryMiB), nil
	}
	if len(full) == 0 {
		return "", nil, userErr(KindNoCapacity, "no host accepted the environment: %s", describeRejections(skip))
	}
	ids := make([]string, 0, len(full))
	for id := range full {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	const shown = 5
	parts := make([]string, 0, shown+1)
	for _, id := range ids[:min(len(ids), shown)] {
		parts = append(parts, "host "+id+" is "+full[id])
	}
	if len(ids) > shown {
		parts = append(parts, fmt.Sprintf("%d more hosts are full", len(ids)-shown))
	}
	return "", nil, userErr(KindNoCapacity, "no capacity: the environment needs %d MiB and %d cpus; %s (of %d live hosts); ask for less memory_mib or cpus, destroy environments or add hosts",
		req.MemoryMiB, req.CPUs, strings.Join(parts, "; "), len(live))
}

// shortfallLocked says what host h lacks for req, as the view shows it with this replica's
// placements in flight: "out of memory: ...", "out of cpus: ..." or "out of environments:
// ..." with the numbers; "" when req fits. r.mu must be held.
func (r *Router) shortfallLocked(h *projector.Host, req CreateRequest) string {
	c, a := h.Capacity, h.Allocated
	switch freeMiB := c.MemoryMiB - a.MemoryMiB - r.pending[h.ID]; {
	case c.MaxEnvironments > 0 && h.EnvCount >= c.MaxEnvironments:
		return fmt.Sprintf("out of environments: %d of %d in use", h.EnvCount, c.MaxEnvironments)
	case freeMiB < req.MemoryMiB:
		return fmt.Sprintf("out of memory: %d of %d MiB free", max(freeMiB, 0), c.MemoryMiB)
	case c.CPUs-a.CPUs < req.CPUs:
		return fmt.Sprintf("out of cpus: %d of %d free", max(c.CPUs-a.CPUs, 0), c.CPUs)
	}
	return ""
}

// reserveLocked counts memory this replica is placing on host until the returned func is
// called. r.mu must be held.
func (r *Router) reserveLocked(host string, mib int) func() {
	r.pending[host] += mib
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.pending[host] -= mib; r.pending[host] <= 0 {
			delete(r.pending, host)
		}
	}
}

// placeOn appends requested+placed for the placement's environment (see appendPlacement) and
// waits for the host's answer. A rejection is returned as its reason (the caller tries
// elsewhere).
func (r *Router) placeOn(ctx context.Context, p Principal, pl placement, req CreateRequest) (*EnvInfo, string, error) {
	host, env := pl.host, pl.env
	name := req.Name
	if name == "" {
		name = req.Runtime + "-" + env[len(env)-8:]
	}
	corr := RequestID(ctx)
	requested, err := events.NewEnvEvent(host, env, events.EnvRequested, p.String(), events.Requested{
		Runtime: req.Runtime, Name: name, Owner: p.Tenant,
		Resources:  events.Resources{CPUs: req.CPUs, MemoryMiB: req.MemoryMiB},
		TTLSeconds: int64(req.TTL / time.Second),
		OnTimeout:  req.OnTimeout,
		ForkOf:     req.ForkOf,
		ResumeOf:   req.ResumeOf,
	})
	if err != nil {
		return nil, "", err
	}
	requested.Correlation = corr
	if requested, err = r.appendPlacement(ctx, p, pl, requested); err != nil {
		return nil, "", err
	}
	r.owners.put(env, ownerEntry{host: host, owner: p.Tenant, runtime: req.Runtime})
	r.logger.Info("placed", "env", env, "host", host, "principal", p.String(), "request", corr, "replay", pl.replay)

	end, err := r.await(ctx, host, env, requested.Seq, r.cfg.BootTimeout,
		events.EnvStarted, events.EnvFailed, events.EnvRejected, events.EnvLost, events.EnvDestroyRequested)
	if err != nil {
		// A caller with an idempotency key retries: its retry finds the environment.
		if ctx.Err() != nil && req.IdempotencyKey == "" {
			r.abandon(ctx, p, host, env, reasonCallerGone)
		}
		return nil, "", err
	}
	info := &EnvInfo{ID: env, Name: name, Runtime: req.Runtime, Host: host, CPUs: req.CPUs, MemoryMiB: req.MemoryMiB,
		TimeoutMinutes: int64(req.TTL / time.Minute), CreatedAt: eventTime(requested)}
	if end == nil {
		state := r.abandon(ctx, p, host, env, reasonBootTimeout)
		return nil, "", userErr(KindTimeout, "host %s did not start environment %s within %s (it was %s); it has been asked to destroy it; try again",
			host, env, r.cfg.BootTimeout, state)
	}
	var reason events.Reason
	switch end.Type {
	case events.EnvStarted:
		var st events.Started
		if err := end.DecodeData(&st); err != nil {
			return nil, "", err
		}
		at := eventTime(end)
		info.Status, info.StartedAt, info.BootMS = events.StateRunning, &at, st.BootMillis
		if pl.replay { // it started a while ago, maybe: say what it is now
			if evs, _, err := r.log.Load(ctx, events.EnvAggregate(host, env)); err == nil {
				if e, err := events.FoldEnv(evs); err == nil {
					info.Status = e.State
				}
			}
		}
		return info, "", nil
	case events.EnvRejected:
		if err := end.DecodeData(&reason); err != nil {
			return nil, "", err
		}
		return info, orDefault(reason.Reason, "no reason given"), nil
	case events.EnvDestroyRequested:
		return nil, "", userErr(KindFailed, "environment %s was destroyed while host %s was starting it", env, host)
	}
	if err := end.DecodeData(&reason); err != nil {
		return nil, "", err
	}
	return nil, "", userErr(KindFailed, "environment %s %s on host %s while starting: %s", env, end.Type, host, orDefault(reason.Reason, "no reason given"))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// abandon asks the host to destroy an environment nobody will use (it did not start in time, or
// its caller went away), so that it does not run on unseen; it returns the state it was in.
func (r *Router) abandon(ctx context.Context, p Principal, host, env, reason string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	evs, head, err := r.log.Load(ctx, events.EnvAggregate(host, env))
	if err != nil {
		r.logger.Error("abandon: load", "env", env, "host", host, "err", err)
		return "unknown"
	}
	e, err := events.FoldEnv(evs)
	if err != nil {
		r.logger.Error("abandon: fold", "env", env, "host", host, "err", err)
		return "unknown"
	}
	state := e.State
	if !e.Allows(events.EnvDestroyRequested) {
		return state
	}
	ev, err := events.NewEnvEvent(host, env, events.EnvDestroyRequested, p.String(),
		events.DestroyRequested{By: "router:" + r.cfg.ID, Reason: reason})
	if err != nil {
		return state
	}
	ev.Correlation = RequestID(ctx)
	if _, err := r.log.Append(ctx, ev, head); err != nil {
		r.logger.Error("abandon: append destroy_requested", "env", env, "host", host, "err", err)
	}
	return state
}
