// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
)

// Control operations.
const (
	OpStatus   = "status"   // reply with the State at once
	OpWait     = "wait"     // reply with the State once the start (and any snapshot) is over
	OpStop     = "stop"     // stop the VM, reply, and exit
	OpRenew    = "renew"    // extend the VM's lease (Request.Lease), reply with the State
	OpSnapshot = "snapshot" // save the VM into Request.Dir (see SnapshotRequest), reply
)

// Request is one control request: a JSON object on one line.
type Request struct {
	Op string `json:"op"`
	// Lease is the argument of OpRenew: the lease from now on (0: the one the VM has).
	Lease time.Duration `json:"lease,omitempty"`
	// Snapshot is the argument of OpSnapshot.
	Snapshot *SnapshotRequest `json:"snapshot,omitempty"`
}

// SnapshotRequest asks for a snapshot of the running VM.
type SnapshotRequest struct {
	// Dir is the new directory (it must not exist; its parent must) that receives the
	// snapshot's files.
	Dir string `json:"dir"`
	// KeepRunning continues the VM after the save, on a new overlay over the frozen disk;
	// without it the VM is stopped and the shim exits once the snapshot is complete.
	KeepRunning bool `json:"keep_running"`
}

// MaxLease bounds a lease.
const MaxLease = 24 * time.Hour

// Response is the reply: the State, or an error.
type Response struct {
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
	// Snapshot is the manifest of the snapshot OpSnapshot took.
	Snapshot *snapshot.Snapshot `json:"snapshot,omitempty"`
}

// maxRequest bounds a request line.
const maxRequest = 4096

// ErrBadRequest is returned for a request the shim does not understand.
var ErrBadRequest = errors.New("bad control request")

// DecodeRequest parses one request line.
func DecodeRequest(line []byte) (Request, error) {
	var r Request
	if len(line) > maxRequest {
		return r, fmt.Errorf("%w: %d bytes", ErrBadRequest, len(line))
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	switch {
	case r.Lease != 0 && r.Op != OpRenew:
		return r, fmt.Errorf("%w: op %q takes no lease", ErrBadRequest, r.Op)
	case r.Lease < 0 || r.Lease > MaxLease:
		return r, fmt.Errorf("%w: lease %s out of range: use 0 (keep the VM's) up to %s", ErrBadRequest, r.Lease, MaxLease)
	}
	switch r.Op {
	case OpStatus, OpWait, OpStop, OpRenew:
		if r.Snapshot != nil {
			return r, fmt.Errorf("%w: op %q takes no snapshot argument", ErrBadRequest, r.Op)
		}
		return r, nil
	case OpSnapshot:
		if r.Snapshot == nil || !filepath.IsAbs(r.Snapshot.Dir) || filepath.Clean(r.Snapshot.Dir) != r.Snapshot.Dir {
			return r, fmt.Errorf("%w: snapshot needs an absolute, clean directory", ErrBadRequest)
		}
		return r, nil
	}
	return r, fmt.Errorf("%w: unknown op %q", ErrBadRequest, r.Op)
}
