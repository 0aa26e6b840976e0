// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/waggle-dev/waggle/router"
)

// TestTenantLimitHoldsWhenRoutersRace: 20 creates at once through 2 routers, with at most 2
// environments per tenant, start exactly 2; the others get a tool error naming the limit. After
// one is destroyed, the tenant may create one more.
func TestTenantLimitHoldsWhenRoutersRace(t *testing.T) {
	c := newCluster(t, 2, func(cfg *router.Config) { cfg.MaxEnvsPerTenant = 2 }, hostStarts, hostStarts)
	key := c.key("acme")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var started []string
	var refused []string
	for i := range 20 {
		cl := c.client(key, "")
		cl.rr.n.Add(uint64(i)) // spread the creates over both routers
		wg.Go(func() {
			text, isErr := cl.call(toolCreate, map[string]any{"runtime": "shell"})
			mu.Lock()
			defer mu.Unlock()
			if isErr {
				refused = append(refused, text)
				return
			}
			started = append(started, text)
		})
	}
	wg.Wait()
	if len(started) != 2 || len(refused) != 18 {
		t.Fatalf("%d started, %d refused; want 2 and 18 (started: %v)", len(started), len(refused), started)
	}
	for _, msg := range refused {
		if !strings.Contains(msg, "the most allowed is 2") {
			t.Fatalf("refusal %q does not name the limit", msg)
		}
	}
	cl := c.client(key, "")
	var env envResult
	if err := json.Unmarshal([]byte(started[0]), &env); err != nil {
		t.Fatal(err)
	}
	cl.ok(toolDestroy, envArgs(env.ID), nil)
	cl.ok(toolCreate, map[string]any{"runtime": "shell"}, nil)
	if msg := cl.fails(toolCreate, map[string]any{"runtime": "shell"}); !strings.Contains(msg, "the most allowed is 2") {
		t.Fatalf("third create: %q", msg)
	}
}
