// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package uids gives each VM of a host its own unprivileged uid (and the same gid) from a
// configured range, as Firecracker's jailer does: every claim is a file named by the uid and
// holding its owner, taken under a lock, so that no two VMs of a host share a uid and an agent
// that restarts finds the claims of the VMs it adopts.
package uids

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/waggle-dev/waggle/internal/fsutil"
)

// Range is an inclusive range of uids; the zero Range is none.
type Range struct {
	First, Last uint32
}

// DefaultRange is the range a host agent running as root uses unless told otherwise: 65536
// uids well above those of ordinary accounts (no account should use them).
func DefaultRange() Range { return Range{First: 200000, Last: 265535} }

// MinUID is the lowest uid a range may hold: below it are system and ordinary accounts.
const MinUID = 1000

// IsZero reports whether r is no range.
func (r Range) IsZero() bool { return r == Range{} }

// Size is the number of uids in r.
func (r Range) Size() int {
	if r.IsZero() {
		return 0
	}
	return int(r.Last-r.First) + 1
}

func (r Range) String() string {
	if r.IsZero() {
		return "off"
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// ParseRange reads "FIRST-LAST" (inclusive) or "off" (the zero Range). A range lies in
// MinUID..2^31-2: never root or system accounts, never -1 (which chown reads as "unchanged").
func ParseRange(s string) (Range, error) {
	if s == "off" {
		return Range{}, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	switch {
	case !ok || err1 != nil || err2 != nil:
		return Range{}, fmt.Errorf("uid range %q: want FIRST-LAST, e.g. %s, or off", s, DefaultRange())
	case first < MinUID || last < first || last > 1<<31-2:
		return Range{}, fmt.Errorf("uid range %q: want %d <= FIRST <= LAST < %d", s, MinUID, 1<<31-1)
	}
	return Range{First: uint32(first), Last: uint32(last)}, nil
}

// ErrExhausted is returned when every uid of the range is claimed by a live owner.
var ErrExhausted = errors.New("every uid of the range is in use")

// Allocator hands out the uids of a range. Its claims live in a directory of their own (one
// file per claimed uid, holding the owner's name) with a lock file beside them; every change
// happens under the lock, so several allocators over one directory (in one process or many)
// never hand out one uid twice.
type Allocator struct {
	dir   string
	r     Range
	alive func(owner string) bool
}

// New is the allocator of r with its claims in dir (created, 0700). alive reports whether an
// owner still exists; the claim of one that does not (a VM whose directory is gone after a
// crash) is stale and may be taken over.
func New(dir string, r Range, alive func(owner string) bool) (*Allocator, error) {
	if r.IsZero() {
		return nil, errors.New("uids: empty range")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uids: %w", err)
	}
	return &Allocator{dir: dir, r: r, alive: alive}, nil
}

// Range is the allocator's range.
func (a *Allocator) Range() Range { return a.r }

// lock takes the allocator's lock.
func (a *Allocator) lock(ctx context.Context) (func(), error) {
	return fsutil.Lock(ctx, filepath.Join(a.dir, ".lock"), nil)
}

// claims reads every claim: uid -> owner.
func (a *Allocator) claims() (map[uint32]string, error) {
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		return nil, fmt.Errorf("uids: %w", err)
	}
	out := make(map[uint32]string, len(entries))
	for _, e := range entries {
		uid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue // the lock file, temporary files
		}
		owner, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("uids: %w", err)
		}
		out[uint32(uid)] = string(owner)
	}
	return out, nil
}

// Claim returns the uid owner holds, or claims a free one for it: starting from a uid derived
// from owner's name (so a host's VMs spread over the range) and taking the first that is
// unclaimed or whose owner is gone.
func (a *Allocator) Claim(ctx context.Context, owner string) (uint32, error) {
	if owner == "" || strings.ContainsAny(owner, "/\n\x00") {
		return 0, fmt.Errorf("uids: bad owner %q", owner)
	}
	unlock, err := a.lock(ctx)
	if err != nil {
		return 0, fmt.Errorf("uids: %w", err)
	}
	defer unlock()
	claims, err := a.claims()
	if err != nil {
		return 0, err
	}
	for uid, o := range claims {
		if o == owner && a.r.contains(uid) {
			return uid, nil
		}
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(owner))
	size := uint32(a.r.Size())
	start := h.Sum32() % size
	for i := range size {
		uid := a.r.First + (start+i)%size
		if o, taken := claims[uid]; taken && a.alive(o) {
			continue
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(a.dir, strconv.FormatUint(uint64(uid), 10)), []byte(owner), 0o600); err != nil {
			return 0, fmt.Errorf("uids: %w", err)
		}
		return uid, nil
	}
	return 0, fmt.Errorf("uids: claim for %s: %w (%s, %d uids)", owner, ErrExhausted, a.r, size)
}

// Release gives back every uid owner holds; an owner that holds none is not an error.
func (a *Allocator) Release(ctx context.Context, owner string) error {
	unlock, err := a.lock(ctx)
	if err != nil {
		return fmt.Errorf("uids: %w", err)
	}
	defer unlock()
	claims, err := a.claims()
	if err != nil {
		return err
	}
	var errs []error
	for uid, o := range claims {
		if o == owner {
			if err := os.Remove(filepath.Join(a.dir, strconv.FormatUint(uint64(uid), 10))); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("uids: release %s: %w", owner, err)
	}
	return nil
}

func (r Range) contains(uid uint32) bool { return uid >= r.First && uid <= r.Last }
