// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package hostrpc is the wire contract between routers and host agents: the NATS request/reply
// subjects of a host's exec and file service, the JSON bodies they carry, the Limits both sides
// check those bodies against, and the object store transfers that carry file contents too large
// for one message.
package hostrpc

import (
	"time"

	"github.com/waggle-dev/waggle/events"
)

// Operation names; the service of host H answers on "waggle.rpc.<H>.<op>".
const (
	OpExec            = "exec"
	OpWriteFile       = "write_file"
	OpReadFile        = "read_file"
	OpListFiles       = "list_files"
	OpInstallPackages = "install_packages"
	OpProcessStart    = "process_start"
	OpProcessRead     = "process_read"
	OpProcessWait     = "process_wait"
	OpProcessKill     = "process_kill"
	// OpPing answers {"host": H} at once: a failure detector asks it of a peer that gossip says
	// is dead, to tell a dead host from one only the gossip cannot reach.
	OpPing   = "ping"
	OpPause  = "pause"
	OpResume = "resume"
)

// Subject is the request subject of one operation on one host.
func Subject(host, op string) string { return "waggle.rpc." + host + "." + op }

// StreamSubject is where host publishes the output chunks of one streamed call (id names the
// call); routers subscribe to it before they send the request.
func StreamSubject(host, id string) string { return "waggle.stream." + host + "." + id }

// Header names carried on every request.
const (
	HeaderPrincipal   = "Waggle-Principal"   // tenant/key id of the caller, for the audit event
	HeaderCorrelation = "Waggle-Correlation" // request id, echoed in logs and audit events
)

// Error codes in an error reply; the router maps them to tool errors.
const (
	CodeBadRequest = "bad_request" // the caller's input is invalid
	CodeNotFound   = "not_found"   // no such environment, file or directory
	CodeNotRunning = "not_running" // the environment exists but is not running
	CodeTooLarge   = "too_large"   // payload over a limit
	CodeBusy       = "busy"        // too many calls in progress (the environment's or the host's); the call did not run
	CodeFailed     = "failed"      // the command ran and failed (install_packages: the package manager's message)
	CodeInternal   = "internal"    // anything else; the message names the request id
)

// ExecRequest runs code in an environment; Timeout 0 is Limits.Exec's default.
type ExecRequest struct {
	Env      string        `json:"env"`
	Code     string        `json:"code"`
	Language string        `json:"language"` // python, node or shell
	Timeout  time.Duration `json:"timeout"`
}

// ExecResult is the outcome of a command; a non-zero exit code is a normal result.
type ExecResult struct {
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	TimedOut   bool   `json:"timed_out"`
	Truncated  bool   `json:"truncated"`
	// Timing says where the time of an execute went, as each hop measured it.
	Timing *Timing `json:"timing,omitempty"`
}

// Timing is how long each hop of an execute took, in milliseconds, each including the ones
// after it: the router's host RPC round trip contains the host agent's time, which contains
// the guest's. The difference between two is the share of the outer hop.
type Timing struct {
	// RPCMS is the router's round trip of the host request over NATS.
	RPCMS float64 `json:"rpc_ms,omitempty"`
	// HostMS is the host agent's time from the request's arrival to its answer (the exec audit
	// event included).
	HostMS float64 `json:"host_ms"`
	// GuestMS is the command's time in the guest as the host agent sees it: from opening the
	// SSH session to the command's exit status.
	GuestMS float64 `json:"guest_ms"`
}

// Millis is d in milliseconds, to the microsecond.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ProcessStartRequest starts code in the background, run like ExecRequest's; Timeout (see
// Limits.Process) kills it.
type ProcessStartRequest struct {
	Env      string        `json:"env"`
	Code     string        `json:"code"`
	Language string        `json:"language"`
	Timeout  time.Duration `json:"timeout"`
}

// ProcessStartResult names the started process.
type ProcessStartResult struct {
	ProcessID string `json:"process_id"`
}

// ProcessRequest is process_read, process_wait and process_kill of one process; Timeout is
// only process_wait's (see Limits.ProcessWait).
type ProcessRequest struct {
	Env       string        `json:"env"`
	ProcessID string        `json:"process_id"`
	Timeout   time.Duration `json:"timeout,omitempty"`
}

// ProcessResult is a process's state: its output so far (capped like exec's) and, once Running
// is false, how it ended (ExitCode means nothing while it runs). A host forgets a process once
// it has answered with Running false.
type ProcessResult struct {
	ProcessID string `json:"process_id"`
	Running   bool   `json:"running"`
	Killed    bool   `json:"killed,omitempty"` // ended by process_kill
	ExecResult
}

// EnvRequest is pause and resume of one environment.
type EnvRequest struct {
	Env string `json:"env"`
}

// PauseResult is a paused environment: its snapshot's size and where it lives, and how long
// the save took (the guest paused).
type PauseResult struct {
	SnapshotBytes int64  `json:"snapshot_bytes"`
	Location      string `json:"location"`
	PauseMS       int64  `json:"pause_ms"`
	// AlreadyPaused is set when the environment was paused before this call.
	AlreadyPaused bool `json:"already_paused,omitempty"`
}

// ResumeResult is a resumed environment: how long the restore took, from the request to a
// guest that takes calls.
type ResumeResult struct {
	ResumeMS int64 `json:"resume_ms"`
	// AlreadyRunning is set when the environment was running before this call.
	AlreadyRunning bool `json:"already_running,omitempty"`
}

// InstallResult is a successful install: the package manager's output and the package files
// the guest fetched through the host's package proxy. A failed install is a CodeFailed error
// carrying the package manager's message.
type InstallResult struct {
	ExecResult
	Fetched []events.PackageFile `json:"fetched"`
}

// InstallRequest installs packages with the runtime's package manager.
type InstallRequest struct {
	Env      string        `json:"env"`
	Packages []string      `json:"packages"`
	Timeout  time.Duration `json:"timeout"`
}

// WriteFileRequest writes a file; Content is raw bytes (base64 in JSON). Content that does not
// fit in one message (see Inline) is a transfer object instead: ContentRef names it, Content is
// empty, and the host deletes the object once it has read it.
type WriteFileRequest struct {
	Env        string `json:"env"`
	Path       string `json:"path"`
	Content    []byte `json:"content"`
	ContentRef string `json:"content_ref,omitempty"`
	Mode       uint32 `json:"mode,omitempty"` // default 0644
}

// WriteFileResult reports what was written.
type WriteFileResult struct {
	Path         string `json:"path"`
	BytesWritten int64  `json:"bytes_written"`
	SHA256       string `json:"sha256"`
}

// ReadFileRequest reads a file of at most Max bytes (0: the host's own limit; the host never
// exceeds its own limit, Limits.MaxFileBytes).
type ReadFileRequest struct {
	Env  string `json:"env"`
	Path string `json:"path"`
	Max  int64  `json:"max,omitempty"`
}

// ReadFileResult carries the file's bytes (base64 in JSON). Bytes that do not fit in one
// message (see Inline) are a transfer object instead: ContentRef names it, Content is empty,
// and the caller deletes the object once it has read it.
type ReadFileResult struct {
	Path       string `json:"path"`
	Content    []byte `json:"content"`
	ContentRef string `json:"content_ref,omitempty"`
	Size       int64  `json:"size"`
}

// ListFilesRequest lists a directory (HomeDir when Path is empty).
type ListFilesRequest struct {
	Env       string `json:"env"`
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
}

// FileInfo is one entry of a listing.
type FileInfo struct {
	Name     string    `json:"name"` // relative to the listed path
	Size     int64     `json:"size"`
	IsDir    bool      `json:"is_dir"`
	Mode     string    `json:"mode"` // ls-style, e.g. -rw-r--r--
	Modified time.Time `json:"modified"`
}

// ListFilesResult is a directory listing.
type ListFilesResult struct {
	Path  string     `json:"path"`
	Files []FileInfo `json:"files"`
	Count int        `json:"count"`
}
