// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"sync"
)

// keyedMutex is one mutex per key, created on first use and dropped when nobody holds or waits
// for it. The zero value is ready to use.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds a token while the key is locked
	refs int           // holders and waiters
}

// lock takes the key's mutex, or returns ctx's error if ctx ends first. The returned function
// releases it.
func (k *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyLock)
	}
	kl := k.locks[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		k.locks[key] = kl
	}
	kl.refs++
	k.mu.Unlock()

	select {
	case kl.ch <- struct{}{}:
		return func() {
			<-kl.ch
			k.release(key, kl)
		}, nil
	case <-ctx.Done():
		k.release(key, kl)
		return nil, ctx.Err()
	}
}

func (k *keyedMutex) release(key string, kl *keyLock) {
	k.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}
