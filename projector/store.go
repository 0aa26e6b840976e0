// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// keyCurrent is the key in events.ViewBucket that names the live generation.
const keyCurrent = "current"

// Generation is one complete copy of the view: its number and buckets, and the stream
// sequence a rebuild wrote it at (0 for the generation the live projector started).
type Generation struct {
	Gen     uint64    `json:"gen"`
	Envs    string    `json:"envs"`
	Hosts   string    `json:"hosts"`
	BuiltAt uint64    `json:"built_at_seq,omitempty"`
	Created time.Time `json:"created"`
}

// generation is the bucket layout of generation gen: its slot of each view bucket.
func generation(gen uint64) Generation {
	return Generation{Gen: gen, Envs: events.ViewSlot(events.EnvsBucket, gen), Hosts: events.ViewSlot(events.HostsBucket, gen),
		Created: time.Now().UTC()}
}

func appliedKey(gen uint64) string { return "applied." + strconv.FormatUint(gen, 10) }

// applied is the value under appliedKey: every event up to Seq is in the generation.
type applied struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
}

// errRace means a revision-checked write lost against another writer: re-read and retry.
var errRace = errors.New("projector: concurrent write")

// bind opens one of the view's buckets, which the admin's setup (events.Setup) or a rebuild
// created.
func bind(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("projector: bucket %s does not exist: the admin's setup creates it (waggle setup, or the first start of waggle up or waggle nats)", bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("projector: open bucket %s: %w", bucket, err)
	}
	return kv, nil
}

func openMeta(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return bind(ctx, js, events.ViewBucket)
}

// openGeneration opens the buckets of g.
func openGeneration(ctx context.Context, js jetstream.JetStream, g Generation) (envs, hosts jetstream.KeyValue, err error) {
	if envs, err = bind(ctx, js, g.Envs); err != nil {
		return nil, nil, err
	}
	if hosts, err = bind(ctx, js, g.Hosts); err != nil {
		return nil, nil, err
	}
	return envs, hosts, nil
}

// currentGeneration reads the live generation. A missing pointer gives jetstream.ErrKeyNotFound.
func currentGeneration(ctx context.Context, meta jetstream.KeyValue) (Generation, uint64, error) {
	return readOrStartGeneration(ctx, meta, false)
}

// readOrStartGeneration reads the live generation; when there is none and start is set, it
// points at generation 1 (whose buckets the setup created).
func readOrStartGeneration(ctx context.Context, meta jetstream.KeyValue, start bool) (Generation, uint64, error) {
	for {
		e, err := meta.Get(ctx, keyCurrent)
		if err == nil {
			var g Generation
			if err := json.Unmarshal(e.Value(), &g); err != nil {
				return Generation{}, 0, fmt.Errorf("projector: decode %s/%s: %w", events.ViewBucket, keyCurrent, err)
			}
			return g, e.Revision(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) || !start {
			return Generation{}, 0, fmt.Errorf("projector: read %s/%s: %w", events.ViewBucket, keyCurrent, err)
		}
		g := generation(1)
		raw, _ := json.Marshal(g)
		rev, err := meta.Create(ctx, keyCurrent, raw)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // another projector started it first
		}
		if err != nil {
			return Generation{}, 0, fmt.Errorf("projector: start generation 1: %w", err)
		}
		return g, rev, nil
	}
}

// table is one KV bucket of JSON values that carry their own stream sequence, with a cache of
// the values and revisions this process wrote or read (invalidated when a write loses).
type table[T any] struct {
	kv    jetstream.KeyValue
	cache map[string]cached[T]
}

type cached[T any] struct {
	val *T
	rev uint64
}

// maxCache bounds a table's cache; it is dropped whole when it grows past this.
const maxCache = 200_000

func newTable[T any](kv jetstream.KeyValue) *table[T] {
	return &table[T]{kv: kv, cache: map[string]cached[T]{}}
}

// get is the value under key and its revision; nil and 0 when absent.
func (t *table[T]) get(ctx context.Context, key string) (*T, uint64, error) {
	if c, ok := t.cache[key]; ok {
		return c.val, c.rev, nil
	}
	e, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("projector: get %s/%s: %w", t.kv.Bucket(), key, err)
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, 0, fmt.Errorf("projector: decode %s/%s: %w", t.kv.Bucket(), key, err)
	}
	t.remember(key, &v, e.Revision())
	return &v, e.Revision(), nil
}

// put writes val over revision rev (0: the key must not exist). A lost race gives errRace.
func (t *table[T]) put(ctx context.Context, key string, val *T, rev uint64) error {
	raw, err := json.Marshal(val)
	if err != nil {
		return fmt.Errorf("projector: encode %s/%s: %w", t.kv.Bucket(), key, err)
	}
	var next uint64
	if rev == 0 {
		next, err = t.kv.Create(ctx, key, raw)
	} else {
		next, err = t.kv.Update(ctx, key, raw, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		delete(t.cache, key)
		return fmt.Errorf("%w: %s/%s", errRace, t.kv.Bucket(), key)
	}
	if err != nil {
		delete(t.cache, key)
		return fmt.Errorf("projector: write %s/%s: %w", t.kv.Bucket(), key, err)
	}
	t.remember(key, val, next)
	return nil
}

func (t *table[T]) remember(key string, val *T, rev uint64) {
	if len(t.cache) >= maxCache {
		clear(t.cache)
	}
	t.cache[key] = cached[T]{val: val, rev: rev}
}

// readAll reads every value of a bucket (one watcher, latest values only).
func readAll[T any](ctx context.Context, kv jetstream.KeyValue) ([]*T, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("projector: read %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	var out []*T
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("projector: read %s: watcher closed", kv.Bucket())
			}
			if e == nil {
				return out, nil
			}
			var v T
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return nil, fmt.Errorf("projector: decode %s/%s: %w", kv.Bucket(), e.Key(), err)
			}
			out = append(out, &v)
		}
	}
}

// readApplied is the sequence generation gen reflects and the key's revision (0, 0 if unset).
func readApplied(ctx context.Context, meta jetstream.KeyValue, gen uint64) (uint64, uint64, error) {
	e, err := meta.Get(ctx, appliedKey(gen))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("projector: read applied sequence: %w", err)
	}
	var a applied
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return 0, 0, fmt.Errorf("projector: decode applied sequence: %w", err)
	}
	return a.Seq, e.Revision(), nil
}

// raiseApplied moves generation gen's applied sequence up to seq (never down), revision-checked
// against other replicas. It returns the sequence now stored and its revision.
func raiseApplied(ctx context.Context, meta jetstream.KeyValue, gen, seq, rev uint64) (uint64, uint64, error) {
	for {
		raw, _ := json.Marshal(applied{Seq: seq, At: time.Now().UTC()})
		var next uint64
		var err error
		if rev == 0 {
			next, err = meta.Create(ctx, appliedKey(gen), raw)
		} else {
			next, err = meta.Update(ctx, appliedKey(gen), raw, rev)
		}
		if err == nil {
			return seq, next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, 0, fmt.Errorf("projector: write applied sequence: %w", err)
		}
		stored, storedRev, err := readApplied(ctx, meta, gen)
		if err != nil {
			return 0, 0, err
		}
		if stored >= seq {
			return stored, storedRev, nil
		}
		rev = storedRev
	}
}
