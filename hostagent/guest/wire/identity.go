// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
)

// IdentityRequest is a global SSH request the host sends right after it restored a guest from a
// snapshot, so that clones of one snapshot share no secret and no state: the guest mixes the
// entropy into its RNG and reseeds it, sets its wall clock, takes the host name, makes a new
// SSH host key, accepts only the new authorized key from then on, and replies with the new host
// key (the host pins it). Connections made with the old keys are closed after the reply.
//
// PID 1 handles it (as root); the sandbox user can neither send it (the SSH server serves only
// the host's address and key) nor see it.
const IdentityRequest = "waggle-identity"

// Limits of an identity request.
const (
	MinEntropy      = 32
	MaxEntropy      = 512
	maxIdentitySize = 4096
)

// Identity is the payload of an IdentityRequest.
type Identity struct {
	// Hostname is the guest's new host name.
	Hostname string `json:"hostname"`
	// AuthorizedKey is the only client key the guest accepts from now on (authorized_keys line).
	AuthorizedKey string `json:"authorized_key"`
	// Entropy is fresh randomness from the host, MinEntropy to MaxEntropy bytes.
	Entropy []byte `json:"entropy"`
	// UnixNano is the host's wall clock when it sent the request.
	UnixNano int64 `json:"time_unix_nano"`
}

// ErrBadIdentity reports an identity request that does not follow the contract.
var ErrBadIdentity = errors.New("invalid identity request")

// Plausible wall clock times, 2020-01-01 and 2200-01-01 UTC in Unix nanoseconds (the guest
// refuses to set its clock outside them).
const (
	minClock = 1577836800 * int64(time.Second)
	maxClock = 7258118400 * int64(time.Second)
)

// Check reports whether id follows the contract and returns its authorized key.
func (id Identity) Check() (ssh.PublicKey, error) {
	if err := CheckHostname(id.Hostname); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	if n := len(id.Entropy); n < MinEntropy || n > MaxEntropy {
		return nil, fmt.Errorf("%w: %d bytes of entropy, want %d to %d", ErrBadIdentity, n, MinEntropy, MaxEntropy)
	}
	if id.UnixNano < minClock || id.UnixNano > maxClock {
		return nil, fmt.Errorf("%w: implausible time %d", ErrBadIdentity, id.UnixNano)
	}
	k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(id.AuthorizedKey))
	if err != nil {
		return nil, fmt.Errorf("%w: authorized key: %w", ErrBadIdentity, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: authorized key: more than one line", ErrBadIdentity)
	}
	return k, nil
}

// EncodeIdentity returns the request payload for id, which must pass Check.
func EncodeIdentity(id Identity) ([]byte, error) {
	if _, err := id.Check(); err != nil {
		return nil, err
	}
	return json.Marshal(id)
}

// DecodeIdentity parses and checks a request payload.
func DecodeIdentity(payload []byte) (Identity, ssh.PublicKey, error) {
	var id Identity
	if len(payload) > maxIdentitySize {
		return Identity{}, nil, fmt.Errorf("%w: %d bytes", ErrBadIdentity, len(payload))
	}
	if err := json.Unmarshal(payload, &id); err != nil {
		return Identity{}, nil, fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	k, err := id.Check()
	if err != nil {
		return Identity{}, nil, err
	}
	return id, k, nil
}

// identityReply is the payload of the guest's reply.
type identityReply struct {
	HostKey string `json:"host_key"`
}

// EncodeIdentityReply is the reply payload announcing the guest's new host key.
func EncodeIdentityReply(hostKey ssh.PublicKey) []byte {
	b, _ := json.Marshal(identityReply{HostKey: MarshalKey(hostKey)}) // a string field cannot fail
	return b
}

// DecodeIdentityReply returns the new host key from a reply payload.
func DecodeIdentityReply(payload []byte) (ssh.PublicKey, error) {
	var r identityReply
	if len(payload) > maxIdentitySize {
		return nil, fmt.Errorf("%w: reply of %d bytes", ErrBadIdentity, len(payload))
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("%w: reply: %w", ErrBadIdentity, err)
	}
	k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(r.HostKey))
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: reply: host key %.100q", ErrBadIdentity, r.HostKey)
	}
	return k, nil
}
