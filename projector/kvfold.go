// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/waggle-dev/waggle/events"
)

// kvView is one generation of the view in KV, written with the same fold as View.
type kvView struct {
	envs  *table[Env]
	hosts *table[Host]
}

func newKVView(envs, hosts jetstream.KeyValue) *kvView {
	return &kvView{envs: newTable[Env](envs), hosts: newTable[Host](hosts)}
}

// maxRaces bounds how often one event is retried after losing revision-checked writes.
const maxRaces = 100

// apply folds one stored event into the KV view. It is idempotent: what an earlier delivery
// (here or in another replica) already wrote is skipped by comparing sequences. An event the
// fold refuses gives an error wrapping ErrNotApplicable and writes nothing.
func (k *kvView) apply(ctx context.Context, ev *events.Event) error {
	for range maxRaces {
		err := k.try(ctx, ev)
		if !errors.Is(err, errRace) {
			return err
		}
		// The losing write dropped its key from the cache; the retry reads it afresh.
	}
	return fmt.Errorf("projector: seq %d: gave up after %d concurrent writes", ev.Seq, maxRaces)
}

// try folds ev with Apply over a view holding just what ev touches, read from the buckets: its
// environment (for an environment event) and its host. What changed is written back, the host
// first; a key whose stored Seq shows ev already applied is left alone.
func (k *kvView) try(ctx context.Context, ev *events.Event) error {
	envID, hostID := "", ev.Host
	switch kindOf(ev) {
	case kindEnv:
		envID = ev.Env
	case kindAudit:
		return nil
	}
	part := &View{Envs: map[string]*Env{}, Hosts: map[string]*Host{}, Seq: ev.Seq - 1}
	var env *Env
	var envRev uint64
	if envID != "" {
		var err error
		if env, envRev, err = k.envs.get(ctx, envID); err != nil {
			return err
		}
		if env != nil && env.Seq >= ev.Seq {
			return nil
		}
		if env != nil {
			part.Envs[envID] = env
		}
	}
	host, hostRev, err := k.hosts.get(ctx, hostID)
	if err != nil {
		return err
	}
	if host != nil {
		part.Hosts[hostID] = host
	}
	if err := Apply(part, ev); err != nil {
		return err
	}
	// The host first: until the environment is written, a retry sees the same environment and
	// makes the same host change, which the host's Seq then shows as done.
	if h := part.Hosts[hostID]; h != host && (host == nil || host.Seq < ev.Seq) {
		if err := k.hosts.put(ctx, hostID, h, hostRev); err != nil {
			return err
		}
	}
	if envID == "" {
		return nil
	}
	return k.envs.put(ctx, envID, part.Envs[envID], envRev)
}
