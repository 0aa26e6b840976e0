// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

// The KV buckets of a waggle cluster beside the event stream. Their names are part of the NATS
// layout like the subjects: the broker's permissions name them, so they are fixed.
const (
	// TokensBucket holds the API keys (their SHA-256 only); routers read it, admins write it.
	TokensBucket = "waggle_tokens"
	// TenantsBucket holds each tenant's reservations (environments and memory), so that tenant
	// limits hold when routers race; routers read and write it.
	TenantsBucket = "waggle_tenants"
	// ViewBucket points at the view's live generation and holds each generation's applied
	// sequence; projectors write it.
	ViewBucket = "waggle_view"
	// EnvsBucket and HostsBucket hold the view's environments and hosts. A rebuild writes the
	// next generation beside the live one (ViewSlot), then swaps, so each has two slots.
	EnvsBucket  = "waggle_envs"
	HostsBucket = "waggle_hosts"
)

// ViewSlot is the name of bucket base (EnvsBucket or HostsBucket) for generation gen: odd
// generations use base, even ones base_2.
func ViewSlot(base string, gen uint64) string {
	if gen%2 == 0 {
		return base + "_2"
	}
	return base
}

// ViewBuckets are every bucket of the view: the pointer bucket and both slots of each.
func ViewBuckets() []string {
	return []string{ViewBucket, ViewSlot(EnvsBucket, 1), ViewSlot(EnvsBucket, 2), ViewSlot(HostsBucket, 1), ViewSlot(HostsBucket, 2)}
}
