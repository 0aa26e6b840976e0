// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"errors"
	"sync"
	"time"
)

// ErrLeaseExpired is the answer to a renew that came too late: the VM is stopping.
var ErrLeaseExpired = errors.New("lease expired: the VM is stopping")

// lease stops a VM that its agent stopped renewing, so that an agent that died for good does
// not leave its VMs running for ever (Spec.Lease, OpRenew). A lease of 0 never runs out until a
// renew gives it a duration.
type lease struct {
	mu      sync.Mutex
	d       time.Duration
	until   time.Time
	timer   *time.Timer   // nil while there is no lease
	over    bool          // ran out
	expired chan struct{} // closed when it runs out
}

func newLease(d time.Duration) *lease {
	l := &lease{expired: make(chan struct{})}
	if d > 0 {
		l.start(d)
	}
	return l
}

// start runs the lease for d from now. l.mu is held (or l is not shared yet).
func (l *lease) start(d time.Duration) {
	l.d, l.until = d, time.Now().Add(d)
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.expire)
	} else {
		l.timer.Reset(d)
	}
}

func (l *lease) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.over || time.Now().Before(l.until) {
		return // renewed while the timer fired
	}
	l.over = true
	close(l.expired)
}

// renew extends the lease to d from now (0: by its current duration) and returns its new end.
func (l *lease) renew(d time.Duration) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.over:
		return time.Time{}, ErrLeaseExpired
	case d == 0 && l.timer == nil:
		return time.Time{}, errors.New("renew: this VM has no lease; give one")
	case d == 0:
		d = l.d
	}
	l.start(d)
	return l.until, nil
}

// end is when the lease runs out (zero: no lease).
func (l *lease) end() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

func (l *lease) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
}
