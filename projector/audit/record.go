// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"fmt"
	"time"

	"github.com/waggle-dev/waggle/events"
)

// Record is one "who did what, when" line of the audit log.
type Record struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`   // producer time
	Stored    time.Time `json:"stored"` // server time
	Principal string    `json:"principal"`
	Env       string    `json:"env,omitempty"`
	Host      string    `json:"host,omitempty"`
	Action    string    `json:"action"`
	Detail    string    `json:"detail,omitempty"`
}

// Actions an auditor asks about, by event type.
var actions = map[string]string{
	events.EnvRequested:        "create",
	events.EnvExec:             "exec",
	events.EnvFileWritten:      "write_file",
	events.EnvFileRead:         "read_file",
	events.EnvDestroyRequested: "destroy",
	events.EnvDestroyed:        "destroyed",
}

// Describe is the audit record of ev, or false for events that are not actions of a principal
// (placement, boot progress, activity, host and audit events).
func Describe(ev *events.Event) (Record, bool) {
	action, ok := actions[ev.Type]
	if !ok || ev.Env == "" {
		return Record{}, false
	}
	r := Record{Seq: ev.Seq, Time: ev.Time, Stored: ev.Stored, Principal: ev.Principal, Env: ev.Env,
		Host: ev.Host, Action: action}
	switch ev.Type {
	case events.EnvRequested:
		var d events.Requested
		if ev.DecodeData(&d) == nil {
			r.Detail = fmt.Sprintf("runtime=%s name=%q owner=%s cpus=%d memory_mib=%d ttl_s=%d",
				d.Runtime, d.Name, d.Owner, d.Resources.CPUs, d.Resources.MemoryMiB, d.TTLSeconds)
		}
	case events.EnvExec:
		var d events.Exec
		if ev.DecodeData(&d) == nil {
			r.Detail = fmt.Sprintf("language=%s code_sha256=%s code_size=%d exit=%d duration_ms=%d stdout=%d stderr=%d",
				d.Language, d.CodeSHA256, d.CodeSize, d.ExitCode, d.DurationMS, d.StdoutBytes, d.StderrBytes)
			if d.TimedOut {
				r.Detail += " timed_out"
			}
		}
	case events.EnvFileWritten, events.EnvFileRead:
		var d events.File
		if ev.DecodeData(&d) == nil {
			r.Detail = fmt.Sprintf("path=%q size=%d sha256=%s", d.Path, d.Size, d.SHA256)
		}
	case events.EnvDestroyRequested:
		var d events.DestroyRequested
		if ev.DecodeData(&d) == nil {
			r.Detail = fmt.Sprintf("by=%s reason=%s", d.By, d.Reason)
		}
	}
	return r, true
}
