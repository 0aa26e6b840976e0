// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"fmt"
)

// Environment states. An environment moves requested -> placed -> starting -> running ->
// destroying -> destroyed; rejected, failed and lost are terminal side exits.
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
)

// Terminal reports whether no further lifecycle event may follow state.
func Terminal(state string) bool {
	switch state {
	case StateDestroyed, StateRejected, StateFailed, StateLost:
		return true
	}
	return false
}

// Live reports whether an environment in state holds (or is about to hold) a VM on its host.
func Live(state string) bool {
	switch state {
	case StatePlaced, StateStarting, StateRunning, StateDestroying:
		return true
	}
	return false
}

// transitions maps a state to the event types allowed in it and the state each leads to.
// Audit events (exec, file_*, touched) keep the state and are allowed only while running.
var transitions = map[string]map[string]string{
	StateNone:      {EnvRequested: StateRequested},
	StateRequested: {EnvPlaced: StatePlaced, EnvRejected: StateRejected, EnvFailed: StateFailed, EnvLost: StateLost},
	StatePlaced: {EnvStarting: StateStarting, EnvRejected: StateRejected, EnvFailed: StateFailed,
		EnvDestroyRequested: StateDestroying, EnvLost: StateLost},
	StateStarting: {EnvStarted: StateRunning, EnvFailed: StateFailed, EnvDestroyRequested: StateDestroying,
		EnvLost: StateLost},
	StateRunning: {EnvTouched: StateRunning, EnvExec: StateRunning, EnvFileWritten: StateRunning,
		EnvFileRead: StateRunning, EnvDestroyRequested: StateDestroying, EnvFailed: StateFailed, EnvLost: StateLost},
	StateDestroying: {EnvDestroyed: StateDestroyed, EnvLost: StateLost, EnvFailed: StateFailed},
}

// Next is the state an environment reaches when an event of type typ follows state, or an
// error naming the illegal transition. Writers fold an aggregate with it before they append.
func Next(state, typ string) (string, error) {
	if next, ok := transitions[state][typ]; ok {
		return next, nil
	}
	from := state
	if from == StateNone {
		from = "new"
	}
	return state, fmt.Errorf("%w: %s environment cannot take %q", ErrIllegalTransition, from, typ)
}

// Allows reports whether an event of type typ may follow state.
func Allows(state, typ string) bool {
	_, ok := transitions[state][typ]
	return ok
}

// ErrIllegalTransition is returned by Next for an event the state machine does not allow.
var ErrIllegalTransition = errors.New("illegal transition")

// EnvState folds an environment's history into its current state, refusing illegal sequences.
func EnvState(history []*Event) (string, error) {
	state := StateNone
	for _, ev := range history {
		next, err := Next(state, ev.Type)
		if err != nil {
			return state, fmt.Errorf("event %d (%s): %w", ev.Seq, ev.ID, err)
		}
		state = next
	}
	return state, nil
}
