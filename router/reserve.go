// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// Tenant limits that hold when routers race. Counting a tenant's environments in the view lets
// N concurrent creates through any number of routers all pass; so a create first reserves its
// environment in its tenant's record in events.TenantsBucket, with a revision-checked update
// that only one of two racing routers wins (the other reads again and counts again). Nothing
// has to release a reservation: a reserve that finds its tenant at a limit drops the
// reservations of environments that are over (their events say so) and of ones whose create
// never got to append anything.

// reservationGrace is how long a reservation without any event of its environment is kept: a
// router reserves before it appends requested, and may die in between.
const reservationGrace = time.Minute

// reserveAttempts bounds the read-count-write loop under contention.
const reserveAttempts = 50

// tenantRecord is a tenant's value in the bucket: its reserved environments.
type tenantRecord struct {
	Envs map[string]reservation `json:"envs"`
}

type reservation struct {
	MemoryMiB int       `json:"memory_mib"`
	At        time.Time `json:"at"`
}

// reservations reserves tenants' environments; it binds to the bucket on first use.
type reservations struct {
	bucket
	log EventLog
}

// reserve records env (of memoryMiB) for tenant if that keeps the tenant within maxEnvs and
// maxMemory (0: no limit), or returns a limit error saying which one it would exceed.
func (rs *reservations) reserve(ctx context.Context, tenant, env string, memoryMiB, maxEnvs, maxMemory int) error {
	kv, err := rs.get(ctx)
	if err != nil {
		return err
	}
	for range reserveAttempts {
		rec, rev, err := rs.read(ctx, kv, tenant)
		if err != nil {
			return err
		}
		if _, ok := rec.Envs[env]; ok {
			return nil // reserved already (a create retried with its idempotency key)
		}
		if over(rec, memoryMiB, maxEnvs, maxMemory) {
			rs.prune(ctx, rec)
		}
		count, mem := totals(rec)
		switch {
		case maxEnvs > 0 && count+1 > maxEnvs:
			return userErr(KindLimit, "tenant %s has %d environments, the most allowed is %d: destroy one first", tenant, count, maxEnvs)
		case maxMemory > 0 && mem+memoryMiB > maxMemory:
			return userErr(KindLimit, "tenant %s uses %d MiB of memory; %d MiB more would exceed its limit of %d MiB: destroy an environment or ask for less memory_mib",
				tenant, mem, memoryMiB, maxMemory)
		}
		rec.Envs[env] = reservation{MemoryMiB: memoryMiB, At: time.Now().UTC()}
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, tenant, raw)
		} else {
			_, err = kv.Update(ctx, tenant, raw, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !events.IsWrongLastSeq(err) {
			return fmt.Errorf("reserve environment %s for tenant %s: %w", env, tenant, err)
		}
		// Another router reserved meanwhile: count again.
	}
	return fmt.Errorf("reserve environment %s for tenant %s: still contended after %d attempts", env, tenant, reserveAttempts)
}

// release drops env's reservation from tenant's record.
func (rs *reservations) release(ctx context.Context, tenant, env string) error {
	kv, err := rs.get(ctx)
	if err != nil {
		return err
	}
	for range reserveAttempts {
		rec, rev, err := rs.read(ctx, kv, tenant)
		if err != nil || rev == 0 {
			return err
		}
		if _, ok := rec.Envs[env]; !ok {
			return nil
		}
		delete(rec.Envs, env)
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = kv.Update(ctx, tenant, raw, rev)
		if err == nil || !events.IsWrongLastSeq(err) {
			return err
		}
	}
	return fmt.Errorf("release environment %s of tenant %s: still contended after %d attempts", env, tenant, reserveAttempts)
}

func (rs *reservations) read(ctx context.Context, kv jetstream.KeyValue, tenant string) (tenantRecord, uint64, error) {
	rec := tenantRecord{Envs: map[string]reservation{}}
	e, err := kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("read reservations of tenant %s: %w", tenant, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("read reservations of tenant %s: %w", tenant, err)
	}
	if rec.Envs == nil {
		rec.Envs = map[string]reservation{}
	}
	return rec, e.Revision(), nil
}

// prune drops from rec the environments that are over, and old reservations whose environment
// has no event at all, as the log (not the view, which may lag) says. What it cannot read it
// keeps.
func (rs *reservations) prune(ctx context.Context, rec tenantRecord) {
	for env, res := range rec.Envs {
		evs, _, err := rs.log.Load(ctx, events.EnvAggregate("*", env))
		if err != nil {
			continue
		}
		if len(evs) == 0 {
			if time.Since(res.At) > reservationGrace {
				delete(rec.Envs, env)
			}
			continue
		}
		if e, err := events.FoldEnv(evs); err == nil && events.Terminal(e.State) {
			delete(rec.Envs, env)
		}
	}
}

func over(rec tenantRecord, memoryMiB, maxEnvs, maxMemory int) bool {
	count, mem := totals(rec)
	return maxEnvs > 0 && count+1 > maxEnvs || maxMemory > 0 && mem+memoryMiB > maxMemory
}

func totals(rec tenantRecord) (count, memoryMiB int) {
	for _, r := range rec.Envs {
		count++
		memoryMiB += r.MemoryMiB
	}
	return count, memoryMiB
}
