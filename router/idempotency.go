// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// Idempotent creates. A create_environment with an idempotency key first claims the key for
// its tenant in events.IdempotencyBucket: the claim names the environment id and the host the
// create chose, before anything is appended. A retry with the same key, through any router
// (after a timeout, a dropped connection, a router that died), finds the claim and carries
// that same environment on: it appends requested and placed if they are still missing (the
// aggregate's expected last sequence lets only one of two racing routers append each) and
// waits for the host's answer. So one key starts at most one environment. When the host
// rejects the environment, the claim moves to a new environment on another host with a
// revision-checked update, so racing routers follow the same one.

// MaxIdempotencyKeyLen bounds an idempotency key.
const MaxIdempotencyKeyLen = 128

// claimAttempts bounds the read-claim loop when other calls with the same key race.
const claimAttempts = 10

// claim is the value of an idempotency key: the environment it created and the create's
// arguments (a retry with other arguments is refused).
type claim struct {
	Env     string    `json:"env"`
	Host    string    `json:"host"`
	Request string    `json:"request"`
	At      time.Time `json:"at"`
}

// errClaimTaken means another call claimed (or moved) the key first.
var errClaimTaken = errors.New("idempotency key claimed by another call")

// bucket is a KV bucket a router binds to on first use (the admin's setup creates it).
type bucket struct {
	js   jetstream.JetStream
	name string

	mu sync.Mutex
	kv jetstream.KeyValue
}

func (b *bucket) get(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := b.js.KeyValue(ctx, b.name)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s (the admin's setup creates it): %w", b.name, err)
	}
	b.kv = kv
	return kv, nil
}

// claims are the tenants' idempotency keys.
type claims struct{ bucket }

// claimKey is the bucket key of a tenant's idempotency key: a hash, so that any key the caller
// chose is a valid KV key and no tenant's key can name another tenant's claim.
func claimKey(tenant, key string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// read returns the claim of key (revision 0: none).
func (c *claims) read(ctx context.Context, tenant, key string) (claim, uint64, error) {
	kv, err := c.get(ctx)
	if err != nil {
		return claim{}, 0, err
	}
	e, err := kv.Get(ctx, claimKey(tenant, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return claim{}, 0, nil
	}
	if err != nil {
		return claim{}, 0, fmt.Errorf("read idempotency key: %w", err)
	}
	var cl claim
	if err := json.Unmarshal(e.Value(), &cl); err != nil {
		return claim{}, 0, fmt.Errorf("read idempotency key: %w", err)
	}
	return cl, e.Revision(), nil
}

// write creates the claim of key (rev 0) or replaces the one at revision rev; errClaimTaken
// when another call wrote it first.
func (c *claims) write(ctx context.Context, tenant, key string, cl claim, rev uint64) error {
	kv, err := c.get(ctx)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(cl)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = kv.Create(ctx, claimKey(tenant, key), raw)
	} else {
		_, err = kv.Update(ctx, claimKey(tenant, key), raw, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || events.IsWrongLastSeq(err) {
		return errClaimTaken
	}
	if err != nil {
		return fmt.Errorf("claim idempotency key: %w", err)
	}
	return nil
}

// checkIdempotencyKey refuses a key that is too long or not printable.
func checkIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKeyLen || strings.IndexFunc(key, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return userErr(KindBadRequest, "idempotency_key must be at most %d printable characters", MaxIdempotencyKeyLen)
	}
	return nil
}

// fingerprint is what a retry with the same idempotency key must ask for again.
func (req CreateRequest) fingerprint() string {
	return fmt.Sprintf("runtime %s, name %q, timeout_minutes %d, cpus %d, memory_mib %d",
		req.Runtime, req.Name, int(req.TTL/time.Minute), req.CPUs, req.MemoryMiB)
}

// claimedPlacement is the next attempt of a create with an idempotency key: the environment
// the key names, unless that is rejected (the environment this call saw rejected), in
// which case the key moves to a new placement.
func (r *Router) claimedPlacement(ctx context.Context, p Principal, req CreateRequest, tried map[string]string, rejected string) (placement, error) {
	for range claimAttempts {
		cl, rev, err := r.claims.read(ctx, p.Tenant, req.IdempotencyKey)
		if err != nil {
			return placement{}, err
		}
		if rev != 0 && cl.Env != rejected {
			if cl.Request != req.fingerprint() {
				return placement{}, userErr(KindBadRequest, "idempotency_key %q was first used to create environment %s with other arguments (%s); use a new key for another environment",
					req.IdempotencyKey, cl.Env, cl.Request)
			}
			if err := r.reserve(ctx, p, cl.Env, req.MemoryMiB); err != nil {
				return placement{}, err
			}
			return placement{env: cl.Env, host: cl.Host, release: func() {}, replay: true}, nil
		}
		pl, err := r.freshPlacement(ctx, p, req, tried)
		if err != nil {
			return placement{}, err
		}
		err = r.claims.write(ctx, p.Tenant, req.IdempotencyKey,
			claim{Env: pl.env, Host: pl.host, Request: req.fingerprint(), At: time.Now().UTC()}, rev)
		if err == nil {
			return pl, nil
		}
		pl.release()
		r.unreserve(ctx, p, pl.env)
		if !errors.Is(err, errClaimTaken) {
			return placement{}, err
		}
		// Another call with this key claimed it first (or moved it): follow that one.
	}
	return placement{}, fmt.Errorf("idempotency key still contended after %d attempts", claimAttempts)
}

// appendPlacement appends requested and placed for the placement, or (another call with the
// same idempotency key got there first) what of them its environment lacks, and returns the
// requested event.
func (r *Router) appendPlacement(ctx context.Context, p Principal, pl placement, requested *events.Event) (*events.Event, error) {
	agg := events.EnvAggregate(pl.host, pl.env)
	var head events.Head
	for attempt := 0; ; attempt++ {
		stored, placed := false, false
		if pl.replay {
			evs, h, err := r.log.Load(ctx, agg)
			if err != nil {
				return nil, fmt.Errorf("load environment %s: %w", pl.env, err)
			}
			if len(evs) > 0 {
				if evs[0].Type != events.EnvRequested {
					return nil, fmt.Errorf("environment %s begins with %s, not %s", pl.env, evs[0].Type, events.EnvRequested)
				}
				requested, stored, placed = evs[0], true, len(evs) > 1
			}
			head = h
		}
		var err error
		if !stored {
			if head, err = r.log.Append(ctx, requested, head); err != nil {
				if errors.Is(err, events.ErrConflict) && attempt < conflictRetries {
					pl.replay = true
					continue
				}
				return nil, fmt.Errorf("append requested for %s: %w", pl.env, err)
			}
		}
		if !placed {
			ev, err := events.NewEnvEvent(pl.host, pl.env, events.EnvPlaced, p.String(), events.Placed{Host: pl.host})
			if err != nil {
				return nil, err
			}
			ev.Correlation, ev.Causation = RequestID(ctx), requested.ID
			if _, err := r.log.Append(ctx, ev, head); err != nil {
				if errors.Is(err, events.ErrConflict) && attempt < conflictRetries {
					pl.replay = true
					continue
				}
				return nil, fmt.Errorf("append placed for %s on %s: %w", pl.env, pl.host, err)
			}
		}
		return requested, nil
	}
}
