// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Control operations.
const (
	OpStatus = "status" // reply with the State at once
	OpWait   = "wait"   // reply with the State once the boot is over (ready or failed)
	OpStop   = "stop"   // stop the VM, reply, and exit
	OpRenew  = "renew"  // extend the VM's lease (Request.Lease), reply with the State
)

// Request is one control request: a JSON object on one line.
type Request struct {
	Op string `json:"op"`
	// Lease is the argument of OpRenew: the lease from now on (0: the one the VM has).
	Lease time.Duration `json:"lease,omitempty"`
}

// MaxLease bounds a lease.
const MaxLease = 24 * time.Hour

// Response is the reply: the State, or an error.
type Response struct {
	State State  `json:"state"`
	Error string `json:"error,omitempty"`
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
		return r, nil
	}
	return r, fmt.Errorf("%w: unknown op %q", ErrBadRequest, r.Op)
}
