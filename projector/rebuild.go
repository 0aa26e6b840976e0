// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
)

// Fold reads the log from the beginning up to its last sequence and folds every event into a
// fresh view, stopping early at the first event for which stop returns true (nil: never).
// Events the fold refuses are skipped as Apply leaves them; they are counted in the result.
func Fold(ctx context.Context, log *events.Log, stop func(*events.Event) bool) (*View, int, error) {
	v := NewView()
	refused := 0
	err := log.Replay(ctx, events.Position{}, nil, func(ev *events.Event) error {
		if stop != nil && stop(ev) {
			return errStop
		}
		if err := Apply(v, ev); err != nil {
			if !errors.Is(err, ErrNotApplicable) {
				return err
			}
			refused++
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, refused, fmt.Errorf("projector: fold: %w", err)
	}
	return v, refused, nil
}

// ReplayAt is the view as it was at t: the fold of every event the server stored at or before t.
func ReplayAt(ctx context.Context, log *events.Log, t time.Time) (*View, error) {
	v, _, err := Fold(ctx, log, func(ev *events.Event) bool { return ev.Stored.After(t) })
	return v, err
}

// RebuildResult describes a finished rebuild.
type RebuildResult struct {
	Generation Generation `json:"generation"`
	Seq        uint64     `json:"seq"` // the last sequence folded in
	Envs       int        `json:"envs"`
	Hosts      int        `json:"hosts"`
	Refused    int        `json:"refused"` // events the fold could not apply
	Hash       string     `json:"hash"`
	Took       string     `json:"took"`
}

// Rebuild folds the whole log in memory, writes the result into the buckets of a new
// generation, and makes it the live one (a revision-checked swap of the pointer, so of two
// concurrent rebuilds one fails). Live projectors then continue in the new generation from its
// sequence. The generation before the live one is overwritten (two slots per bucket).
//
// It creates and deletes buckets: only the admin's credential may.
func Rebuild(ctx context.Context, log *events.Log) (RebuildResult, error) {
	start := time.Now()
	js := log.JetStream()
	meta, err := openMeta(ctx, js)
	if err != nil {
		return RebuildResult{}, err
	}
	cur, rev, err := readOrStartGeneration(ctx, meta, true)
	if err != nil {
		return RebuildResult{}, err
	}
	// The new buckets get as many replicas as the live ones.
	live, err := js.Stream(ctx, "KV_"+cur.Envs)
	if err != nil {
		return RebuildResult{}, fmt.Errorf("projector: rebuild: bucket %s: %w", cur.Envs, err)
	}
	replicas := live.CachedInfo().Config.Replicas
	view, refused, err := Fold(ctx, log, nil)
	if err != nil {
		return RebuildResult{}, err
	}
	next := generation(cur.Gen + 1)
	next.BuiltAt = view.Seq
	// The next generation's slot holds the generation before the live one (or what a failed
	// rebuild left): readers that far behind have had a whole rebuild's time to move on.
	for _, b := range []string{next.Envs, next.Hosts} {
		if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return RebuildResult{}, fmt.Errorf("projector: rebuild: clear %s: %w", b, err)
		}
	}
	for _, b := range []string{next.Envs, next.Hosts} {
		if _, err := js.CreateKeyValue(ctx, events.BucketConfig(b, replicas)); err != nil {
			return RebuildResult{}, fmt.Errorf("projector: rebuild: create %s: %w", b, err)
		}
	}
	envs, hosts, err := openGeneration(ctx, js, next)
	if err != nil {
		return RebuildResult{}, err
	}
	if err := writeAll(ctx, envs, view.Envs); err != nil {
		return RebuildResult{}, err
	}
	if err := writeAll(ctx, hosts, view.Hosts); err != nil {
		return RebuildResult{}, err
	}
	if _, _, err := raiseApplied(ctx, meta, next.Gen, view.Seq, 0); err != nil {
		return RebuildResult{}, err
	}
	raw, _ := json.Marshal(next)
	if _, err := meta.Update(ctx, keyCurrent, raw, rev); err != nil {
		return RebuildResult{}, fmt.Errorf("projector: rebuild: swap to generation %d (another rebuild finished first?): %w", next.Gen, err)
	}
	if err := forgetGenerationsBefore(ctx, meta, next.Gen-1); err != nil {
		return RebuildResult{}, err
	}
	return RebuildResult{Generation: next, Seq: view.Seq, Envs: len(view.Envs), Hosts: len(view.Hosts),
		Refused: refused, Hash: view.Hash(), Took: time.Since(start).Round(time.Millisecond).String()}, nil
}

func writeAll[T any](ctx context.Context, kv jetstream.KeyValue, vals map[string]*T) error {
	for id, v := range vals {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("projector: rebuild: encode %s: %w", id, err)
		}
		if _, err := kv.Put(ctx, id, raw); err != nil {
			return fmt.Errorf("projector: rebuild: write %s/%s: %w", kv.Bucket(), id, err)
		}
	}
	return nil
}

// forgetGenerationsBefore drops the applied sequences of generations below keep (their
// buckets are the slots the next rebuilds reuse).
func forgetGenerationsBefore(ctx context.Context, meta jetstream.KeyValue, keep uint64) error {
	for g := uint64(1); g < keep; g++ {
		if err := meta.Purge(ctx, appliedKey(g)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("projector: forget generation %d: %w", g, err)
		}
	}
	return nil
}
