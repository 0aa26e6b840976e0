// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// SchemaVersion is the envelope version this build writes and the newest it can read.
const SchemaVersion = 1

// Event types of an environment aggregate (subject waggle.env.<host>.<env>.<type>).
const (
	EnvRequested        = "requested"
	EnvPlaced           = "placed"
	EnvRejected         = "rejected"
	EnvStarting         = "starting"
	EnvStarted          = "started"
	EnvFailed           = "failed"
	EnvTouched          = "touched"
	EnvExec             = "exec"
	EnvFileWritten      = "file_written"
	EnvFileRead         = "file_read"
	EnvDestroyRequested = "destroy_requested"
	EnvDestroyed        = "destroyed"
	EnvLost             = "lost"
	EnvPaused           = "paused"
	EnvResumed          = "resumed"
	EnvMoved            = "moved"
)

// Event types of a host aggregate (subject waggle.host.<host>.<type>).
const (
	HostJoined  = "joined"
	HostLeft    = "left"
	HostFailed  = "failed"
	HostDrained = "drained"
)

// AuditDigest is the type of a digest event (subject waggle.audit.digest).
const AuditDigest = "digest"

// ErrUnknownVersion is returned when an event was written by a newer schema than this build knows.
var ErrUnknownVersion = errors.New("events: unknown schema version")

// Event is the envelope every stored event carries. Seq, Stored and Subject are filled from
// JetStream metadata when an event is read; they are not part of the stored JSON.
type Event struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	V           int             `json:"v"`
	Env         string          `json:"env,omitempty"`
	Host        string          `json:"host,omitempty"`
	Time        time.Time       `json:"time"`
	Principal   string          `json:"principal"`
	Causation   string          `json:"causation,omitempty"`
	Correlation string          `json:"correlation,omitempty"`
	Prev        string          `json:"prev,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`

	Seq     uint64    `json:"-"`
	Stored  time.Time `json:"-"`
	Subject string    `json:"-"`
	// Raw is the stored JSON; its SHA-256 is the event's hash (Hash).
	Raw []byte `json:"-"`
}

// NewEnvEvent builds an environment event with a fresh id, the current time and typed data.
func NewEnvEvent(host, env, typ, principal string, data any) (*Event, error) {
	return newEvent(typ, env, host, principal, data)
}

// NewHostEvent builds a host lifecycle event.
func NewHostEvent(host, typ, principal string, data any) (*Event, error) {
	return newEvent(typ, "", host, principal, data)
}

// NewAuditEvent builds an audit record (subject waggle.audit.<kind>), such as a digest.
func NewAuditEvent(kind, principal string, data any) (*Event, error) {
	return newEvent(kind, "", "", principal, data)
}

func newEvent(typ, env, host, principal string, data any) (*Event, error) {
	ev := &Event{ID: ulid.Make().String(), Type: typ, V: SchemaVersion, Env: env, Host: host,
		Time: time.Now().UTC(), Principal: principal}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("encode %s data: %w", typ, err)
		}
		ev.Data = raw
	}
	return ev, nil
}

// DerivedID is an event id that every writer computing it from the same at and parts gets: a
// ULID with at's time (kept within ULID's range) and a hash of the parts. Writers that may
// append the same event at once (the failure detectors of a host, the routers that end a stuck
// environment) give it that id, so that the stream's deduplication stores it once.
func DerivedID(at time.Time, parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	var id ulid.ULID
	ms := min(max(at.UnixMilli(), 0), int64(ulid.MaxTime()))
	_ = id.SetTime(uint64(ms)) // within range
	copy(id[6:], h.Sum(nil)[:10])
	return id.String()
}

// Decode parses a stored event. An event of a newer schema version gives ErrUnknownVersion.
func Decode(raw []byte) (*Event, error) {
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if ev.V < 1 || ev.V > SchemaVersion {
		return nil, fmt.Errorf("%w: event %q has v=%d, this build reads 1..%d", ErrUnknownVersion, ev.ID, ev.V, SchemaVersion)
	}
	if ev.ID == "" || ev.Type == "" {
		return nil, fmt.Errorf("decode event: missing id or type")
	}
	ev.Raw = raw
	return &ev, nil
}

// Hash is the hex SHA-256 of the stored bytes; the next event of the aggregate carries it as Prev.
func Hash(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// DecodeData unmarshals the event's type-specific data into v.
func (e *Event) DecodeData(v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s data of event %s: %w", e.Type, e.ID, err)
	}
	return nil
}
