// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper starts PID 1's children and collects zombies.
//
// It collects zombie children that nobody waits for (orphans re-parented to init), and never a
// child a goroutine of this process owns and will wait for itself: owned children are started
// through Start, under the same lock the reaper holds while it scans, so a child cannot exit and
// be reaped between its start and its registration.
//
// Children are forked from one dedicated OS thread (see spawnLoop) whose restrictions they
// inherit. It implements sshd.Tracker.
type reaper struct {
	mu     sync.Mutex
	owned  map[int]struct{}
	self   int
	starts chan *exec.Cmd
	errs   chan error
}

func newReaper() *reaper {
	return &reaper{owned: make(map[int]struct{}), self: os.Getpid()}
}

// Start starts cmd on the spawner thread and marks its pid as owned.
func (r *reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starts == nil {
		return errors.New("spawner thread not running")
	}
	r.starts <- cmd
	if err := <-r.errs; err != nil {
		return err
	}
	r.owned[cmd.Process.Pid] = struct{}{}
	return nil
}

// privileged is the reaper as the Tracker of the package installer: it starts children from
// the calling goroutine's thread, one of PID 1's unrestricted ones, so they keep root's
// capabilities (no_new_privs still holds: nothing they execute gains more).
type privileged struct{ *reaper }

// Start starts cmd and marks its pid as owned.
func (p privileged) Start(cmd *exec.Cmd) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	p.owned[cmd.Process.Pid] = struct{}{}
	return nil
}

// startSpawner starts the spawner thread, whose credentials restrict runs once on it before any
// child exists. It returns restrict's error.
func (r *reaper) startSpawner(restrict func() error) error {
	r.starts, r.errs = make(chan *exec.Cmd), make(chan error)
	ready := make(chan error)
	go r.spawnLoop(restrict, ready)
	if err := <-ready; err != nil {
		r.starts = nil
		return err
	}
	return nil
}

// stopSpawner ends the spawner thread.
func (r *reaper) stopSpawner() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starts != nil {
		close(r.starts)
		r.starts = nil
	}
}

// spawnLoop runs on a locked OS thread for the life of the init: credentials (no_new_privs, the
// capability bounding set) belong to a thread, and a child forked by cmd.Start on this thread
// copies this thread's. The thread is never unlocked, so no other goroutine ever runs on it.
func (r *reaper) spawnLoop(restrict func() error, ready chan<- error) {
	runtime.LockOSThread()
	if err := restrict(); err != nil {
		ready <- err
		return // the locked thread exits with the goroutine
	}
	close(ready)
	for cmd := range r.starts {
		r.errs <- cmd.Start()
	}
}

// Done releases cmd's pid after its owner waited for it.
func (r *reaper) Done(cmd *exec.Cmd) {
	r.mu.Lock()
	delete(r.owned, cmd.Process.Pid)
	r.mu.Unlock()
}

// reap waits for every zombie child that is not owned. wait4(-1) cannot be used, it would take
// owned children's statuses too: candidates come from /proc, read without the lock (a child
// being started cannot exit unregistered: Start holds the lock from fork to registration).
func (r *reaper) reap() {
	var zombies []int
	for _, pid := range childPIDs() {
		if r.isZombieChild(pid) {
			zombies = append(zombies, pid)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pid := range zombies {
		if _, mine := r.owned[pid]; !mine {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil) // ECHILD: reaped meanwhile
		}
	}
}

// childPIDs lists the children of every thread of this process from /proc/self/task/*/children,
// or, on kernels without that file, every pid in /proc.
func childPIDs() []int {
	var pids []int
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	for _, t := range tasks {
		raw, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if errors.Is(err, os.ErrNotExist) {
			return allPIDs()
		}
		for f := range bytes.FieldsSeq(raw) {
			if pid, err := strconv.Atoi(string(f)); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func allPIDs() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isZombieChild reports whether pid is a zombie whose parent is this process, from
// /proc/PID/stat: "pid (comm) state ppid ...", where comm may contain anything.
func (r *reaper) isZombieChild(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 || string(f[0]) != "Z" {
		return false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	return err == nil && ppid == r.self
}
