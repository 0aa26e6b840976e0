// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import "time"

// Resources are what an environment reserves on its host.
type Resources struct {
	CPUs      int `json:"cpus"`
	MemoryMiB int `json:"memory_mib"`
	DiskMiB   int `json:"disk_mib,omitempty"`
}

// Requested is the data of EnvRequested.
type Requested struct {
	Runtime    string            `json:"runtime"`
	Name       string            `json:"name"`
	Owner      string            `json:"owner"` // tenant id
	Resources  Resources         `json:"resources"`
	TTLSeconds int64             `json:"ttl_s"` // idle timeout
	Labels     map[string]string `json:"labels,omitempty"`
	// OnTimeout is what the idle timeout does: OnTimeoutDestroy (also when empty) or
	// OnTimeoutPause.
	OnTimeout string `json:"on_timeout,omitempty"`
	// ForkOf, when set, is the environment (on the same host) whose running copy this one
	// starts as: its files and processes at the moment of the fork.
	ForkOf string `json:"fork_of,omitempty"`
	// ResumeOf, when set, is the lost paused environment (of a failed host) whose snapshot in
	// the object store this one starts from: its files and processes when it was paused.
	ResumeOf string `json:"resume_of,omitempty"`
}

// Moved is the data of EnvMoved: the environment that runs on as To.
type Moved struct {
	To string `json:"to"`
}

// What an environment's idle timeout does (Requested.OnTimeout).
const (
	OnTimeoutDestroy = "destroy"
	OnTimeoutPause   = "pause"
)

// Paused is the data of EnvPaused: where the environment's snapshot (memory, devices and
// disk layers) lives and how large it is.
type Paused struct {
	SnapshotBytes int64  `json:"snapshot_bytes"`
	Location      string `json:"location"`         // "host:<dir>" on the environment's host, or "objects:<name>" also in the object store
	PausedMillis  int64  `json:"paused_ms"`        // the save, guest paused
	Reason        string `json:"reason,omitempty"` // "call" or "idle timeout"
}

// Resumed is the data of EnvResumed.
type Resumed struct {
	ResumeMillis int64 `json:"resume_ms"` // from the request to a guest that takes calls
	// Transparent is set when another call resumed the environment, not resume_environment.
	Transparent bool `json:"transparent,omitempty"`
}

// Placed is the data of EnvPlaced.
type Placed struct {
	Host string `json:"host"`
}

// Reason is the data of EnvRejected, EnvFailed and EnvLost.
type Reason struct {
	Reason string `json:"reason"`
}

// Started is the data of EnvStarted.
type Started struct {
	BootMillis int64 `json:"boot_ms"`
	Warm       bool  `json:"warm,omitempty"` // taken from the warm pool
}

// Touched is the data of EnvTouched: activity since the last touched event, coalesced.
type Touched struct {
	LastActive time.Time `json:"last_active"`
	Calls      int       `json:"calls"`
}

// Exec is the data of EnvExec, the audit record of one command run.
type Exec struct {
	Language    string `json:"language"`
	CodeSHA256  string `json:"code_sha256"`
	CodeSize    int    `json:"code_size"`
	ExitCode    int    `json:"exit_code"`
	DurationMS  int64  `json:"duration_ms"`
	StdoutBytes int    `json:"stdout_bytes"`
	StderrBytes int    `json:"stderr_bytes"`
	TimedOut    bool   `json:"timed_out,omitempty"`
	Truncated   bool   `json:"truncated,omitempty"`
	// Background marks a process_start process: it is audited when it starts (Phase
	// ExecStarted: who started what; no outcome yet) and when it ends.
	Background bool   `json:"background,omitempty"`
	Phase      string `json:"phase,omitempty"`
	// Error is why the command has no normal outcome (the guest connection broke, ...); the
	// call was made all the same.
	Error string `json:"error,omitempty"`
	// Packages are the specs install_packages was asked for (Language "install:<runtime>").
	Packages []string `json:"packages,omitempty"`
	// Fetched are the package files the guest fetched through the host's package proxy while
	// the command ran.
	Fetched []PackageFile `json:"fetched,omitempty"`
}

// PackageFile is one package file a guest fetched through its host's package proxy.
type PackageFile struct {
	Manager string `json:"manager"` // pip, npm or apt
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	File    string `json:"file"` // the file's name, e.g. requests-2.32.3-py3-none-any.whl
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Cached  bool   `json:"cached"` // served from the host's cache, not fetched from the upstream
}

// Phases of a background process's exec events.
const (
	ExecStarted = "started"
	ExecEnded   = "ended"
)

// File is the data of EnvFileWritten and EnvFileRead.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Destroy reasons.
const (
	ReasonUser       = "user"
	ReasonTTL        = "ttl"
	ReasonHostFailed = "host_failed"
	ReasonHostLeft   = "host_left"
)

// DestroyRequested is the data of EnvDestroyRequested.
type DestroyRequested struct {
	By     string `json:"by"`
	Reason string `json:"reason"` // ReasonUser, ReasonTTL, ...
}

// HostInfo is the data of HostJoined: where the host is and what it offers.
type HostInfo struct {
	Address         string `json:"address"` // memberlist address
	CPUs            int    `json:"cpus"`
	MemoryMiB       int    `json:"memory_mib"`
	MaxEnvironments int    `json:"max_environments"`
}

// HostFailure is the data of HostFailed.
type HostFailure struct {
	DetectedBy string `json:"detected_by"`
	// JoinSeq is the sequence of the host.joined of the incarnation declared failed: a host
	// that rejoined since is a new incarnation the failure is not about.
	JoinSeq uint64 `json:"join_seq,omitempty"`
}

// Digest is the data of AuditDigest: a hash over the stored bytes of a covered sequence range.
type Digest struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Count    int    `json:"count"`
	SHA256   string `json:"sha256"`
}
