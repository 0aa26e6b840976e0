// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Roles of the cluster's processes.
const (
	RoleNATS      = "nats"
	RoleProjector = "projector"
	RoleHostAgent = "hostagent"
	RoleRouter    = "router"
)

// Proc is one process of the cluster: how it is started and, once started, the running
// instance. A Proc read back from cluster.json by another process (waggle cluster down) knows
// only its pid.
type Proc struct {
	Name string // nats1, proj1, host1, router1: its id in the cluster
	Role string
	// Args are waggle's arguments; Env is added to its environment (secrets go there, not into
	// the command line that ps shows).
	Args []string
	Env  []string
	// Netns is the network namespace it runs in ("": the machine's own).
	Netns string
	// Dir is its own directory (its data directory, and the working directory of all); Log
	// gets its stdout and stderr, appended across restarts.
	Dir, Log string
	// Addr is what it serves on: the client URL of a NATS node, the MCP URL of a router, the
	// gossip address of a host agent.
	Addr string
	// ip is its address (none for projectors, which listen on nothing).
	ip string

	mu   sync.Mutex
	pid  int
	done chan struct{} // closed when the process has ended
	err  error         // how a child ended, set before done is closed
	// logStart is the log's size when this instance started: its own lines follow.
	logStart int64
}

// ProcError says which process did not do what was expected of it, with the end of its log.
type ProcError struct {
	Proc *Proc
	Err  error
}

func (e *ProcError) Error() string {
	return fmt.Sprintf("%s: %v\nlast lines of its log %s:\n%s", e.Proc.Name, e.Err, e.Proc.Log, e.Proc.Tail(logTailLines))
}

func (e *ProcError) Unwrap() error { return e.Err }

// logTailLines is how much of a process's log an error shows.
const logTailLines = 30

// start runs bin with the process's arguments in a session of its own (it outlives the
// command that started it, and a terminal's Ctrl-C does not reach it).
func (p *Proc) start(bin string) error {
	if err := os.MkdirAll(p.Dir, 0o711); err != nil {
		return err
	}
	logFile, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	info, err := logFile.Stat()
	if err != nil {
		return err
	}
	argv := append([]string{bin}, p.Args...)
	if p.Netns != "" {
		// nsenter enters only the network namespace and execs waggle (the pid stays).
		argv = append([]string{"nsenter", "--net=" + netnsPath(p.Netns), "--"}, argv...)
	}
	fmt.Fprintf(logFile, "--- %s: %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = p.Dir
	cmd.Env = append(childEnv(), p.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.pid, p.done, p.err, p.logStart = cmd.Process.Pid, done, nil, info.Size()
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// childEnv is this process's environment without WAGGLE_ settings, which would override the
// flags the cluster gives.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WAGGLE_") {
			env = append(env, kv)
		}
	}
	return env
}

// attach takes over a process another waggle started (its pid from cluster.json), if it still
// runs this cluster's command line; it reports whether it does.
func (p *Proc) attach(pid int, clusterDir string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if pid <= 0 || err != nil || !bytes.Contains(cmdline, []byte(clusterDir+string(filepath.Separator))) || gone(pid) {
		return false
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.pid, p.done = pid, done
	p.mu.Unlock()
	go func() {
		for !gone(pid) {
			time.Sleep(50 * time.Millisecond)
		}
		close(done)
	}()
	return true
}

// gone reports whether pid has ended (a zombie nobody reaped counts as ended).
func gone(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may contain anything.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// Pid is the pid of the running instance (0 when it never started or has ended).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.pid
	}
}

// Running reports whether the process runs.
func (p *Proc) Running() bool { return p.Pid() != 0 }

// exited is closed when the running instance has ended (nil before it started).
func (p *Proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// exitErr describes how the last instance ended.
func (p *Proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return errors.New("exited")
}

// Signal sends sig to the running instance.
func (p *Proc) Signal(sig syscall.Signal) error {
	pid := p.Pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", p.Name)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, pid, err)
	}
	return nil
}

// Wait waits up to timeout for the running instance to end; it reports whether it did.
func (p *Proc) Wait(timeout time.Duration) bool {
	done := p.exited()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill ends the process at once (SIGKILL) and waits until it is gone.
func (p *Proc) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.Wait(killWait) {
		return fmt.Errorf("%s (pid %d) still there %s after SIGKILL", p.Name, p.pid, killWait)
	}
	return nil
}

// killWait bounds how long a killed process may take to disappear.
const killWait = 10 * time.Second

// Stop asks the process to stop (SIGTERM) and waits up to timeout, then kills it; the error
// says when it had to be killed.
func (p *Proc) Stop(timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.Wait(timeout) {
		return nil
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return &ProcError{Proc: p, Err: fmt.Errorf("did not stop within %s of SIGTERM; killed", timeout)}
}

// Tail is the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logged reports whether the running instance's log holds a line containing s.
func (p *Proc) logged(s string) bool {
	p.mu.Lock()
	from := p.logStart
	p.mu.Unlock()
	data, err := os.ReadFile(p.Log)
	if err != nil || int64(len(data)) < from {
		return false
	}
	return bytes.Contains(data[from:], []byte(s))
}
