// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"fmt"
	"time"
)

// Env is one environment as its events tell it. Apply is the one fold of the environment
// aggregate: the projector's view, the host agent's aggregates and the router's answers all use
// it, so what an event type means is written here once. Times are the events' producer times
// (UTC), so every fold of the same history gives the same Env.
type Env struct {
	ID         string            `json:"id"`
	Name       string            `json:"name,omitempty"`
	Owner      string            `json:"owner"` // tenant
	Runtime    string            `json:"runtime"`
	Resources  Resources         `json:"resources"`
	Host       string            `json:"host"` // the aggregate's host: it never changes
	State      string            `json:"state"`
	TTLSeconds int64             `json:"ttl_s,omitempty"` // idle timeout
	Labels     map[string]string `json:"labels,omitempty"`
	Created    time.Time         `json:"created,omitzero"`
	Started    time.Time         `json:"started,omitzero"`
	LastActive time.Time         `json:"last_active,omitzero"`
	BootMillis int64             `json:"boot_ms,omitempty"`
	LastError  string            `json:"last_error,omitempty"`
	OnTimeout  string            `json:"on_timeout,omitempty"` // see Requested.OnTimeout
	ForkOf     string            `json:"fork_of,omitempty"`    // see Requested.ForkOf
	ResumeOf   string            `json:"resume_of,omitempty"`  // see Requested.ResumeOf
	MovedTo    string            `json:"moved_to,omitempty"`   // see Moved
	// Snapshot is where a paused environment's snapshot lives (nil unless paused).
	Snapshot *Paused   `json:"snapshot,omitempty"`
	PausedAt time.Time `json:"paused_at,omitzero"`
	// Seq is the stream sequence of the last event folded in.
	Seq uint64 `json:"seq"`
}

// Allows reports whether the environment can take an event of type typ now: a lifecycle event
// the state machine allows from its state, or an audit event once it has run.
func (e *Env) Allows(typ string) bool {
	if IsAudit(typ) {
		return !e.Started.IsZero()
	}
	_, ok := transitions[e.State][typ]
	return ok
}

// Apply folds ev, the next event of this environment, into e. An event e cannot take (see
// Allows) or whose data does not decode leaves e unchanged; the error wraps
// ErrIllegalTransition or the decoding error and names the event.
func (e *Env) Apply(ev *Event) error {
	n := *e
	if err := n.apply(ev); err != nil {
		return fmt.Errorf("environment %s: event %d (%s %s): %w", ev.Env, ev.Seq, ev.Type, ev.ID, err)
	}
	n.Seq = ev.Seq
	*e = n
	return nil
}

func (e *Env) apply(ev *Event) error {
	at := ev.Time.UTC()
	if IsAudit(ev.Type) {
		if !e.Allows(ev.Type) {
			return fmt.Errorf("%w: %s environment that never ran cannot take %q", ErrIllegalTransition, orNew(e.State), ev.Type)
		}
		active := at
		if ev.Type == EnvTouched {
			var d Touched
			if err := ev.DecodeData(&d); err != nil {
				return err
			}
			active = d.LastActive.UTC()
		}
		e.LastActive = later(e.LastActive, active)
		return nil
	}
	state, err := next(e.State, ev.Type)
	if err != nil {
		return err
	}
	switch ev.Type {
	case EnvRequested:
		var d Requested
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		*e = Env{ID: ev.Env, Name: d.Name, Owner: d.Owner, Runtime: d.Runtime, Resources: d.Resources,
			Host: ev.Host, TTLSeconds: d.TTLSeconds, Labels: d.Labels, OnTimeout: d.OnTimeout, ForkOf: d.ForkOf, ResumeOf: d.ResumeOf, Created: at}
	case EnvStarted:
		var d Started
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		e.Started, e.LastActive, e.BootMillis = at, later(e.LastActive, at), d.BootMillis
	case EnvPaused:
		var d Paused
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		e.Snapshot, e.PausedAt = &d, at
	case EnvResumed:
		var d Resumed
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		e.Snapshot, e.PausedAt, e.LastActive = nil, time.Time{}, later(e.LastActive, at)
	case EnvMoved:
		var d Moved
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		if err := ValidID(d.To); err != nil {
			return fmt.Errorf("moved: %w", err)
		}
		e.MovedTo = d.To
	case EnvRejected, EnvFailed, EnvLost:
		var d Reason
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		e.LastError = d.Reason
	}
	e.State = state
	return nil
}

// FoldEnv folds an environment's history, in order, from the empty environment; the first
// event it cannot take is an error.
func FoldEnv(history []*Event) (Env, error) {
	var e Env
	for _, ev := range history {
		if err := e.Apply(ev); err != nil {
			return e, err
		}
	}
	return e, nil
}

// TTL is the environment's idle timeout (0: none asked for).
func (e *Env) TTL() time.Duration { return time.Duration(e.TTLSeconds) * time.Second }

func orNew(state string) string {
	if state == StateNone {
		return "new"
	}
	return state
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
