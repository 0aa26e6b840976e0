// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The KV buckets of a waggle cluster beside the event stream. Their names are part of the NATS
// layout like the subjects: the broker's permissions name them, so they are fixed.
const (
	// TokensBucket holds the API keys (their SHA-256 only); routers read it, admins write it.
	TokensBucket = "waggle_tokens"
	// TenantsBucket holds each tenant's reservations (environments and memory), so that tenant
	// limits hold when routers race; routers read and write it.
	TenantsBucket = "waggle_tenants"
	// IdempotencyBucket maps a tenant's create_environment idempotency keys to the environment
	// each one created (for IdempotencyTTL); routers read and write it.
	IdempotencyBucket = "waggle_idempotency"
	// ViewBucket points at the view's live generation and holds each generation's applied
	// sequence; projectors write it.
	ViewBucket = "waggle_view"
	// EnvsBucket and HostsBucket hold the view's environments and hosts. A rebuild writes the
	// next generation beside the live one (ViewSlot), then swaps, so each has two slots.
	EnvsBucket  = "waggle_envs"
	HostsBucket = "waggle_hosts"
)

// IdempotencyTTL is how long an idempotency key names its environment: a create retried with
// the same key within it returns that environment instead of starting another.
const IdempotencyTTL = time.Hour

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

// BucketConfig is the configuration Setup gives bucket (one of the names above, or a slot of
// the view), with replicas copies (0: 1).
func BucketConfig(bucket string, replicas int) jetstream.KeyValueConfig {
	cfg := jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	switch bucket {
	case TokensBucket:
		cfg.Description, cfg.History = "waggle API keys (SHA-256 only)", 5
	case TenantsBucket:
		cfg.Description = "waggle tenant reservations (environments and memory per tenant)"
	case IdempotencyBucket:
		cfg.Description, cfg.TTL = "waggle create_environment idempotency keys (tenant and key hashed) and their environments", IdempotencyTTL
	case ViewBucket:
		cfg.Description = "waggle view: live generation and applied sequences"
	case ViewSlot(EnvsBucket, 1), ViewSlot(EnvsBucket, 2):
		cfg.Description = "waggle view: environments"
	case ViewSlot(HostsBucket, 1), ViewSlot(HostsBucket, 2):
		cfg.Description = "waggle view: hosts"
	}
	return cfg
}

// setupBuckets are the buckets Setup creates: all but the view's second slots, which a
// rebuild creates when it needs them.
func setupBuckets() []string {
	return []string{TokensBucket, TenantsBucket, IdempotencyBucket, ViewBucket, ViewSlot(EnvsBucket, 1), ViewSlot(HostsBucket, 1)}
}

// Setup is the admin's part of a cluster's start: it creates the event stream and the buckets
// beside it (or brings their settings back) and returns the log. Every other role only binds
// to them (BindLog, jetstream.KeyValue), and the broker lets only the admin do this. Replicas
// (WithReplicas) apply to the buckets as to the stream.
func Setup(ctx context.Context, nc *nats.Conn, opts ...LogOption) (*Log, error) {
	l, err := OpenLog(ctx, nc, opts...)
	if err != nil {
		return nil, err
	}
	replicas := l.stream.CachedInfo().Config.Replicas
	for _, b := range setupBuckets() {
		err := retryTransient(ctx, func(ctx context.Context) error {
			_, err := l.js.CreateOrUpdateKeyValue(ctx, BucketConfig(b, replicas))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("set up bucket %s: %w", b, err)
		}
	}
	return l, nil
}
