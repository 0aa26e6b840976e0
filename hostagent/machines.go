// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
)

// Machines is what the agent needs from the microVM layer: boot a VM and find the VMs that
// still run (they survive an agent restart). A VM's id is its environment's id.
type Machines interface {
	// Launch boots a VM and returns once its guest accepts commands.
	Launch(ctx context.Context, spec LaunchSpec) (Machine, error)
	// Scan lists the VMs of this host that are still running, including ones an earlier agent
	// process started.
	Scan(ctx context.Context) ([]Machine, error)
	// Pause saves m (memory, devices, disk) under its id and stops it; the Machine is done.
	Pause(ctx context.Context, m Machine) (Paused, error)
	// Resume starts the VM paused under spec.ID again, with its files and processes and a new
	// identity, and forgets the saved state once the VM runs.
	Resume(ctx context.Context, spec LaunchSpec) (Machine, error)
	// PausedDir is the directory Pause saves id's snapshot in and Resume restores it from (a
	// snapshot fetched from another host goes there).
	PausedDir(id string) (string, error)
	// DropPaused deletes what Pause saved under id (nothing saved is no error).
	DropPaused(ctx context.Context, id string) error
	// Fork starts a VM (spec.ID) as a copy of the running src: its files and processes, with
	// its own identity; src is paused only for the save.
	Fork(ctx context.Context, src Machine, spec LaunchSpec) (Machine, error)
}

// Paused is what Machines.Pause saved.
type Paused struct {
	Bytes    int64  // size of the snapshot on disk
	Location string // where it lives: host:<dir>
	// Files are the snapshot's files, the manifest last: what to copy to move it.
	Files []string
	Took  time.Duration // the save, guest paused
}

// LaunchSpec describes the VM of one environment.
type LaunchSpec struct {
	ID        string // environment id; also the VM id
	Runtime   string // guest image: python, node, shell, ...
	Resources events.Resources
	// Lease stops the VM by itself unless Renew is called within it (0: no lease).
	Lease time.Duration
}

// Machine is one running VM and the guest inside it.
type Machine interface {
	ID() string
	// Stop powers the VM off and removes its disk and network.
	Stop(ctx context.Context) error
	IsAlive() bool
	// Renew extends the VM's lease to lease from now: a VM that nobody renews within its lease
	// stops by itself, so that none outlives its agent for good.
	Renew(ctx context.Context, lease time.Duration) error
	Exec(ctx context.Context, spec ExecSpec) (ExecResult, error)
	WriteFile(ctx context.Context, path string, data []byte, mode uint32) error
	// ReadFile returns ErrTooLarge when the file is bigger than max bytes.
	ReadFile(ctx context.Context, path string, max int64) ([]byte, error)
	// ListFiles lists path (recursively when asked), at most max entries.
	ListFiles(ctx context.Context, path string, recursive bool, max int) ([]hostrpc.FileInfo, error)
}

// ExecSpec is one command run in a guest as the unprivileged sandbox user.
type ExecSpec struct {
	Argv  []string
	Env   map[string]string
	Stdin []byte
	// Program, if not nil, is the source of a program for the interpreter Argv, which the
	// guest saves to a file and runs in one spawn (see guestclient.ExecRequest.Program).
	Program   []byte
	Timeout   time.Duration
	MaxOutput int // cap per stream, in bytes
	// Stdout and Stderr, if set, receive the output (within MaxOutput) as it arrives.
	Stdout, Stderr io.Writer
}

// ExecResult is a finished command; a non-zero exit code is not an error.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int
	Duration       time.Duration
	TimedOut       bool
	Truncated      bool
}

// Typed errors a Machine returns for the caller's mistakes; anything else is internal.
var (
	ErrNotFound    = errors.New("no such file or directory")
	ErrTooLarge    = errors.New("file too large")
	ErrInvalidPath = errors.New("invalid path")
)
