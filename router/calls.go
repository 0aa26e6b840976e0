// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import "sync"

// tenantCalls counts the tool calls each tenant has in progress on this replica.
type tenantCalls struct {
	max int // 0: unlimited

	mu sync.Mutex
	n  map[string]int
}

// BeginCall admits one tool call of p's tenant, or refuses it as busy (KindBusy) when the
// tenant already has Config.MaxCallsPerTenant calls in progress on this replica; other tenants
// are not affected. The caller ends an admitted call with end.
func (r *Router) BeginCall(p Principal) (end func(), err error) {
	c := &r.calls
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.n[p.Tenant] >= c.max {
		return nil, userErr(KindBusy, "tenant %s is busy: it has %d calls in progress on this router, the most it may have at once "+
			"(--max-calls-per-tenant); nothing was done, retry once one of them has finished", p.Tenant, c.n[p.Tenant])
	}
	c.n[p.Tenant]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[p.Tenant]--; c.n[p.Tenant] == 0 {
				delete(c.n, p.Tenant)
			}
		})
	}, nil
}
