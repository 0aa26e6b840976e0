// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// process is a session's command: the leader of its own session and process group.
type process struct {
	cmd     *exec.Cmd
	tracker Tracker
	stdin   *os.File // write end of the command's stdin
	stdout  *os.File // read end of the command's stdout
	stderr  *os.File // read end of the command's stderr

	mu   sync.Mutex
	gone bool // the group was killed after the leader exited: its id may be reused
}

// exitStatus is how a command ended.
type exitStatus struct {
	code   int
	signal string // set if a signal ended the command
	core   bool
}

// command is what spawn starts: argv with env in dir, as cred (nil: the server's own
// identity), through tracker (nil: directly).
type command struct {
	argv, env []string
	dir       string
	cred      *syscall.Credential
	tracker   Tracker
}

// spawn starts c in a new session. If it fails, code is the exit status a shell would report
// (127: not found, 126: cannot run).
func (s *Server) spawn(c command) (p *process, code int, err error) {
	argv := c.argv
	path, err := lookPath(argv[0], s.cfg.Path, c.dir)
	if err != nil {
		return nil, 127, err
	}
	var files [6]*os.File // stdin r/w, stdout r/w, stderr r/w
	for i := 0; i < len(files); i += 2 {
		if files[i], files[i+1], err = os.Pipe(); err != nil {
			closeAll(files[:])
			return nil, 126, fmt.Errorf("pipe: %w", err)
		}
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    c.env,
		Dir:    c.dir,
		Stdin:  files[0],
		Stdout: files[3],
		Stderr: files[5],
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:     true,
			Credential: c.cred,
		},
	}
	if c.tracker != nil {
		err = c.tracker.Start(cmd)
	} else {
		err = cmd.Start()
	}
	closeAll([]*os.File{files[0], files[3], files[5]}) // the child's ends
	if err != nil {
		closeAll([]*os.File{files[1], files[2], files[4]})
		return nil, 126, fmt.Errorf("%s: %w", argv[0], err)
	}
	return &process{cmd: cmd, tracker: c.tracker, stdin: files[1], stdout: files[2], stderr: files[4]}, 0, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// run connects the process to ch until it exits and its output is drained, then kills what is
// left of its process group and returns the exit status.
func (p *process) run(ch ssh.Channel, grace time.Duration) exitStatus {
	go func() {
		_, _ = io.Copy(p.stdin, ch) // until the client closes its side or the process exits
		p.stdin.Close()
	}()
	var out sync.WaitGroup
	out.Go(func() { _, _ = io.Copy(ch, p.stdout) })
	out.Go(func() { _, _ = io.Copy(ch.Stderr(), p.stderr) })
	drained := make(chan struct{})
	go func() { out.Wait(); close(drained) }()

	werr := p.cmd.Wait()
	if p.tracker != nil {
		p.tracker.Done(p.cmd)
	}
	select {
	case <-drained:
	case <-time.After(grace):
		// Processes left in the group still hold stdout or stderr open.
		p.killGroup()
		select {
		case <-drained:
		case <-time.After(grace):
			// Something outside the group (it called setsid) holds the pipes.
			p.stdout.Close()
			p.stderr.Close()
			<-drained
		}
	}
	p.buryGroup()
	p.stdout.Close()
	p.stderr.Close()
	p.stdin.Close()
	return statusOf(p.cmd.ProcessState, werr)
}

// statusOf turns a finished command's state into an exit status.
func statusOf(ps *os.ProcessState, werr error) exitStatus {
	if ps == nil {
		return exitStatus{code: 255}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		if name, known := signalName(ws.Signal()); known {
			return exitStatus{code: 128 + int(ws.Signal()), signal: name, core: ws.CoreDump()}
		}
		return exitStatus{code: 128 + int(ws.Signal())}
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return exitStatus{code: 255}
	}
	return exitStatus{code: ps.ExitCode()}
}

// signalGroup sends sig to the process group, unless it is already gone.
func (p *process) signalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pgid := p.pid()
	if p.gone || pgid <= 1 { // never kill(-1) or kill(0)
		return errors.New("process group gone")
	}
	return syscall.Kill(-pgid, sig)
}

// killGroup kills the process group (idempotent: a group already gone is no error to act on).
func (p *process) killGroup() { _ = p.signalGroup(syscall.SIGKILL) }

// buryGroup kills what is left of the group after the leader was waited for, and marks the
// group gone so that no later signal can hit a group that reused its id.
func (p *process) buryGroup() {
	p.killGroup()
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
}

// lookPath finds the executable for name: a name with a slash is taken as is (relative to dir),
// any other is searched in the colon-separated path.
func lookPath(name, path, dir string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := executable(name); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return name, nil
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			continue
		}
		if p := filepath.Join(d, name); executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// saveProgram reads a program's source from r to its end into a new private file (readable
// only by the user commands run as) and returns the file's path; the caller removes it.
func (s *Server) saveProgram(r io.Reader) (string, error) {
	src, err := io.ReadAll(io.LimitReader(r, wire.MaxProgramBytes+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("read program: %w", err)
	case len(src) > wire.MaxProgramBytes:
		return "", fmt.Errorf("program larger than %d bytes", wire.MaxProgramBytes)
	}
	f, err := os.CreateTemp("", "waggle-program-*")
	if err != nil {
		return "", fmt.Errorf("save program: %w", err)
	}
	if c := s.cfg.Credential; c != nil {
		err = f.Chown(int(c.Uid), int(c.Gid))
	}
	if err == nil {
		_, err = f.Write(src)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("save program: %w", err)
	}
	return f.Name(), nil
}
