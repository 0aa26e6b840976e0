// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/projector"
)

// startingHost plays host h1: every placement it sees is started.
func startingHost(t *testing.T, n *eventstest.Node) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		_ = n.Log.Follow(ctx, events.Position{}, []string{events.HostEnvs("h1")}, func(ev *events.Event) error {
			if ev.Type != events.EnvPlaced {
				return nil
			}
			head := events.Head{Seq: ev.Seq, Hash: events.Hash(ev.Raw)}
			for _, typ := range []string{events.EnvStarting, events.EnvStarted} {
				next, err := events.NewEnvEvent("h1", ev.Env, typ, "host:h1", events.Started{})
				if err != nil {
					return err
				}
				if head, err = n.Log.Append(ctx, next, head); err != nil {
					return err
				}
			}
			return nil
		})
	}()
}

// TestIdempotentCreateCarriesOnAfterRouterDied: a router that claimed an idempotency key and
// died before appending anything, or after appending requested only, leaves an environment a
// retry with the same key (on another router) carries on: the same id, one requested, one
// placed, started once.
func TestIdempotentCreateCarriesOnAfterRouterDied(t *testing.T) {
	ctx := context.Background()
	n := eventstest.Start(t)
	startingHost(t, n)
	cfg := DefaultConfig()
	cfg.NoAuth = true
	view := emptyView{hosts: []*projector.Host{{ID: "h1", State: projector.HostLive,
		Capacity: events.HostInfo{CPUs: 8, MemoryMiB: 8192, MaxEnvironments: 10}}}}
	r, err := New(cfg, Deps{NC: n.NC, Log: n.Log, View: view, MCP: noFrontend})
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{Tenant: "acme", KeyID: "k1"}
	for _, tc := range []struct {
		name     string
		appended []string // what the dead router appended before it died
	}{
		{"claimed only", nil},
		{"requested appended", []string{events.EnvRequested}},
		{"requested and placed appended", []string{events.EnvRequested, events.EnvPlaced}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := r.normalize(CreateRequest{Runtime: "shell", IdempotencyKey: "key " + tc.name})
			if err != nil {
				t.Fatal(err)
			}
			env := "01dead" + strings.ReplaceAll(tc.name, " ", "")
			if err := r.claims.write(ctx, p.Tenant, req.IdempotencyKey, claim{Env: env, Host: "h1", Request: req.fingerprint()}, 0); err != nil {
				t.Fatal(err)
			}
			head := events.Head{}
			for _, typ := range tc.appended {
				var data any = events.Requested{Runtime: "shell", Name: "shell-" + env[len(env)-8:], Owner: p.Tenant,
					Resources: events.Resources{CPUs: req.CPUs, MemoryMiB: req.MemoryMiB}, TTLSeconds: int64(req.TTL / time.Second)}
				if typ == events.EnvPlaced {
					data = events.Placed{Host: "h1"}
				}
				ev, _ := events.NewEnvEvent("h1", env, typ, p.String(), data)
				if head, err = n.Log.Append(ctx, ev, head); err != nil {
					t.Fatal(err)
				}
			}
			info, err := r.Create(ctx, p, CreateRequest{Runtime: "shell", IdempotencyKey: req.IdempotencyKey})
			if err != nil {
				t.Fatal(err)
			}
			if info.ID != env || info.Status != events.StateRunning {
				t.Fatalf("retry created %s (%s), want the claimed %s running", info.ID, info.Status, env)
			}
			evs, _, err := n.Log.Load(ctx, events.EnvAggregate("h1", env))
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, ev := range evs {
				types = append(types, ev.Type)
			}
			if got := strings.Join(types, " "); got != "requested placed starting started" {
				t.Fatalf("history %s", got)
			}
		})
	}

	// Other arguments with a used key are refused; another tenant's same key is its own.
	first, err := r.Create(ctx, p, CreateRequest{Runtime: "shell", IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Create(ctx, p, CreateRequest{Runtime: "python", IdempotencyKey: "k"})
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindBadRequest || !strings.Contains(ue.Msg, "other arguments (runtime shell") {
		t.Fatalf("same key, other runtime: %v", err)
	}
	other, err := r.Create(ctx, Principal{Tenant: "globex", KeyID: "k2"}, CreateRequest{Runtime: "shell", IdempotencyKey: "k"})
	if err != nil || other.ID == first.ID {
		t.Fatalf("another tenant's create with the same key: %+v, %v", other, err)
	}
	again, err := r.Create(ctx, p, CreateRequest{Runtime: "shell", IdempotencyKey: "k"})
	if err != nil || again.ID != first.ID {
		t.Fatalf("retry: %+v, %v; want %s", again, err, first.ID)
	}
	for _, key := range []string{strings.Repeat("x", MaxIdempotencyKeyLen+1), "a\nb"} {
		_, err := r.Create(ctx, p, CreateRequest{Runtime: "shell", IdempotencyKey: key})
		var ue *UserError
		if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "idempotency_key must be at most") {
			t.Fatalf("key %q: %v", key, err)
		}
	}
}
