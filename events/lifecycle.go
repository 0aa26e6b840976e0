// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"fmt"
)

// Environment states. An environment moves requested -> placed -> starting -> running ->
// destroying -> destroyed, and running -> paused -> running as often as it is paused and
// resumed; rejected, failed and lost are terminal side exits.
const (
	StateNone       = ""
	StateRequested  = "requested"
	StatePlaced     = "placed"
	StateStarting   = "starting"
	StateRunning    = "running"
	StateDestroying = "destroying"
	StateDestroyed  = "destroyed"
	StateRejected   = "rejected"
	StateFailed     = "failed"
	StateLost       = "lost"
	StatePaused     = "paused" // saved on its host, no VM running
	StateMoved      = "moved"  // lost, then resumed on another host as a new environment
)

// Terminal reports whether no further lifecycle event may follow state.
func Terminal(state string) bool {
	switch state {
	case StateDestroyed, StateRejected, StateFailed, StateLost, StateMoved:
		return true
	}
	return false
}

// Live reports whether an environment in state holds (or is about to hold) a VM on its host:
// what the host's allocation counts. A paused one holds only its snapshot (see OnHost).
func Live(state string) bool {
	switch state {
	case StatePlaced, StateStarting, StateRunning, StateDestroying:
		return true
	}
	return false
}

// OnHost reports whether an environment in state depends on its host: live, or paused (its
// snapshot is there). When the host fails, it is lost.
func OnHost(state string) bool { return Live(state) || state == StatePaused }

// transitions maps a state to the lifecycle event types allowed in it and the state each leads
// to. Audit events (see IsAudit) are not in it: they never change the state.
var transitions = map[string]map[string]string{
	StateNone: {EnvRequested: StateRequested},
	// A requested environment may be destroyed: its router died (or its caller went away)
	// before placing it, and it must not count against its tenant for ever.
	StateRequested: {EnvPlaced: StatePlaced, EnvRejected: StateRejected, EnvFailed: StateFailed, EnvLost: StateLost,
		EnvDestroyRequested: StateDestroying},
	StatePlaced: {EnvStarting: StateStarting, EnvRejected: StateRejected, EnvFailed: StateFailed,
		EnvDestroyRequested: StateDestroying, EnvLost: StateLost},
	StateStarting: {EnvStarted: StateRunning, EnvFailed: StateFailed, EnvDestroyRequested: StateDestroying,
		EnvLost: StateLost},
	StateRunning: {EnvDestroyRequested: StateDestroying, EnvFailed: StateFailed, EnvLost: StateLost,
		EnvPaused: StatePaused},
	// A paused environment has no VM: resumed runs it again from its snapshot.
	StatePaused:     {EnvResumed: StateRunning, EnvDestroyRequested: StateDestroying, EnvFailed: StateFailed, EnvLost: StateLost},
	StateDestroying: {EnvDestroyed: StateDestroyed, EnvLost: StateLost, EnvFailed: StateFailed},
	// A paused environment lost with its host, whose snapshot is in the object store, is
	// resumed on another host as a new environment (Requested.ResumeOf); moved names it. The
	// one lifecycle event after a terminal state: it changes nothing on the failed host.
	StateLost: {EnvMoved: StateMoved},
}

// IsAudit reports whether typ is an audit event: a record of a call (exec, file_written,
// file_read) or of activity (touched). Audit events change no state and are accepted in any
// state once the environment has run, so that nothing that ran goes unrecorded, even when the
// environment was destroyed or lost while the call was under way.
func IsAudit(typ string) bool {
	switch typ {
	case EnvExec, EnvFileWritten, EnvFileRead, EnvTouched:
		return true
	}
	return false
}

// ErrIllegalTransition is returned for an event the state machine does not allow.
var ErrIllegalTransition = errors.New("illegal transition")

// next is the state a lifecycle event of type typ leads to from state, or an error naming the
// illegal transition.
func next(state, typ string) (string, error) {
	if n, ok := transitions[state][typ]; ok {
		return n, nil
	}
	return state, fmt.Errorf("%w: %s environment cannot take %q", ErrIllegalTransition, orNew(state), typ)
}
