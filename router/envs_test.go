// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/eventstest"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/projector"
)

// emptyView is a view that has caught up with nothing: every read misses.
type emptyView struct{ hosts []*projector.Host }

func (emptyView) Env(_ context.Context, id string) (*projector.Env, error) {
	return nil, projector.ErrNotFound
}
func (emptyView) Envs(context.Context) ([]*projector.Env, error)                 { return nil, nil }
func (emptyView) EnvsByTenant(context.Context, string) ([]*projector.Env, error) { return nil, nil }
func (v emptyView) Hosts(context.Context) ([]*projector.Host, error)             { return v.hosts, nil }
func (emptyView) Freshness(context.Context) (uint64, error)                      { return 0, nil }

func noFrontend(*Router) http.Handler { return http.NotFoundHandler() }

// TestOwnerFromLogWhenViewLags: an environment the view does not show yet (another replica
// just created it) is found in the event log, for its owner only.
func TestOwnerFromLogWhenViewLags(t *testing.T) {
	ctx := context.Background()
	n := eventstest.Start(t)
	cfg := DefaultConfig()
	cfg.NoAuth = true
	r, err := New(cfg, Deps{NC: n.NC, Log: n.Log, View: emptyView{}, MCP: noFrontend})
	if err != nil {
		t.Fatal(err)
	}
	const host, env = "h1", "01envlagging"
	req, _ := events.NewEnvEvent(host, env, events.EnvRequested, "acme/k1",
		events.Requested{Runtime: "node", Name: "n", Owner: "acme", Resources: events.Resources{CPUs: 1, MemoryMiB: 256}, TTLSeconds: 600})
	head, err := n.Log.Append(ctx, req, events.Head{})
	if err != nil {
		t.Fatal(err)
	}
	placed, _ := events.NewEnvEvent(host, env, events.EnvPlaced, "acme/k1", events.Placed{Host: host})
	if _, err := n.Log.Append(ctx, placed, head); err != nil {
		t.Fatal(err)
	}

	d, err := r.Get(ctx, Principal{Tenant: "acme", KeyID: "k1"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if d.Host != host || d.Status != events.StatePlaced || d.Runtime != "node" || d.TimeoutMinutes != 10 || len(d.History) != 2 {
		t.Fatalf("get: %+v", d)
	}
	for _, tc := range []struct {
		tenant, env string
	}{{"globex", env}, {"acme", "01unknown"}, {"acme", "a.b"}} {
		_, err := r.Get(ctx, Principal{Tenant: tc.tenant, KeyID: "k"}, tc.env)
		if ue, ok := AsUserError(err); !ok || ue.Kind != KindNotFound || !strings.Contains(ue.Msg, "not found") {
			t.Errorf("%s getting %q: %v", tc.tenant, tc.env, err)
		}
	}
	// The host never answers: exec says so instead of hanging or failing obscurely.
	_, err = r.Exec(ctx, Principal{Tenant: "acme"}, env, ExecRequest{Code: "1"})
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindNotRunning || !strings.Contains(ue.Msg, "state: placed") {
		t.Fatalf("exec on an environment whose host is absent: %v", err)
	}
	// Default payload limits are stated in the errors, before any host is asked.
	acme := Principal{Tenant: "acme"}
	_, err = r.Exec(ctx, acme, env, ExecRequest{Code: strings.Repeat("x", 512001)})
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindTooLarge || !strings.Contains(ue.Msg, "the limit is 512000 bytes") {
		t.Fatalf("large code: %v", err)
	}
	_, err = r.WriteFile(ctx, acme, env, "/f", make([]byte, 32<<20+1))
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindTooLarge || !strings.Contains(ue.Msg, "the limit is 33554432 bytes") {
		t.Fatalf("large file: %v", err)
	}
	// A file larger than one message goes out as a transfer object; when the host does not take
	// it, the router deletes it.
	_, err = r.WriteFile(ctx, acme, env, "/f", make([]byte, n.NC.MaxPayload()))
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindNotRunning {
		t.Fatalf("large file to an absent host: %v", err)
	}
	store, err := n.Log.JetStream().ObjectStore(ctx, hostrpc.TransferBucket)
	if err != nil {
		t.Fatal(err)
	}
	if infos, err := store.List(ctx); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatalf("transfer objects left behind: %d (%v)", len(infos), err)
	}
	// No live host: create fails fast.
	_, err = r.Create(ctx, Principal{Tenant: "acme"}, CreateRequest{Runtime: "python"})
	if ue, ok := AsUserError(err); !ok || ue.Kind != KindNoHost {
		t.Fatalf("create without hosts: %v", err)
	}
}

func TestChooseHost(t *testing.T) {
	host := func(id, state string, memCap, memUsed, envs, maxEnvs int) *projector.Host {
		return &projector.Host{ID: id, State: state, EnvCount: envs,
			Capacity:  events.HostInfo{CPUs: 4, MemoryMiB: memCap, MaxEnvironments: maxEnvs},
			Allocated: events.Resources{MemoryMiB: memUsed}}
	}
	req := CreateRequest{Runtime: "python", CPUs: 1, MemoryMiB: 512}
	for _, tc := range []struct {
		name  string
		hosts []*projector.Host
		skip  map[string]string
		want  string // host id, or the kind of error
	}{
		{"least allocated", []*projector.Host{host("a", "live", 8192, 4096, 4, 0), host("b", "live", 8192, 1024, 1, 0)}, nil, "b"},
		{"only live", []*projector.Host{host("a", "failed", 8192, 0, 0, 0), host("b", "live", 8192, 4096, 4, 0)}, nil, "b"},
		{"skip rejected", []*projector.Host{host("a", "live", 8192, 0, 0, 0), host("b", "live", 8192, 4096, 4, 0)}, map[string]string{"a": "full"}, "b"},
		{"env count full", []*projector.Host{host("a", "live", 8192, 0, 2, 2), host("b", "live", 8192, 4096, 4, 0)}, nil, "b"},
		{"no room", []*projector.Host{host("a", "live", 1024, 768, 1, 0)}, nil, KindNoCapacity},
		{"no live", []*projector.Host{host("a", "drained", 8192, 0, 0, 0)}, nil, KindNoHost},
		{"all rejected", []*projector.Host{host("a", "live", 8192, 0, 0, 0)}, map[string]string{"a": "full"}, KindNoCapacity},
		{"none", nil, nil, KindNoHost},
	} {
		r := &Router{pending: map[string]int{}}
		got, _, err := r.chooseHost(tc.hosts, req, tc.skip)
		if ue, ok := AsUserError(err); ok {
			got = ue.Kind
		} else if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: chose %q (%v), want %q", tc.name, got, err, tc.want)
		}
	}
	// In-flight placements of this replica count: a burst spreads over equal hosts.
	r := &Router{pending: map[string]int{}}
	hosts := []*projector.Host{host("a", "live", 8192, 0, 0, 0), host("b", "live", 8192, 0, 0, 0)}
	first, release, _ := r.chooseHost(hosts, req, nil)
	second, release2, _ := r.chooseHost(hosts, req, nil)
	release()
	release2()
	if first == second || len(r.pending) != 0 {
		t.Fatalf("two placements in flight both went to %s (pending %v)", first, r.pending)
	}
}
