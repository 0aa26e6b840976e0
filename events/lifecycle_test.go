// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"testing"
)

// TestAllowsAgreesWithNext: Allows says yes exactly where Next moves without error.
func TestAllowsAgreesWithNext(t *testing.T) {
	states := []string{StateNone, StateRequested, StatePlaced, StateStarting, StateRunning, StateDestroying,
		StateDestroyed, StateRejected, StateFailed, StateLost}
	types := []string{EnvRequested, EnvPlaced, EnvRejected, EnvStarting, EnvStarted, EnvFailed, EnvTouched, EnvExec,
		EnvFileWritten, EnvFileRead, EnvDestroyRequested, EnvDestroyed, EnvLost, "no-such-type"}
	for _, state := range states {
		for _, typ := range types {
			_, err := Next(state, typ)
			if err != nil && !errors.Is(err, ErrIllegalTransition) {
				t.Fatalf("Next(%q, %q): %v", state, typ, err)
			}
			if got := Allows(state, typ); got != (err == nil) {
				t.Errorf("Allows(%q, %q) = %v, Next error %v", state, typ, got, err)
			}
		}
	}
	for _, tc := range []struct {
		state, typ string
		want       bool
	}{
		{StateRunning, EnvDestroyRequested, true},
		{StateRequested, EnvDestroyRequested, false},
		{StateDestroyed, EnvExec, false},
	} {
		if got := Allows(tc.state, tc.typ); got != tc.want {
			t.Errorf("Allows(%q, %q) = %v, want %v", tc.state, tc.typ, got, tc.want)
		}
	}
}
