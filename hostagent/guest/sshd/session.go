// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

//go:build linux

package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// session is one SSH session channel: its environment, then at most one process.
type session struct {
	srv *Server
	ch  ssh.Channel
	log *slog.Logger
	env []string
	dir string

	mu      sync.Mutex
	proc    *process // nil until a command started
	started bool
	closed  bool          // the client closed the channel: a command that starts now is killed
	done    chan struct{} // closed when the command's goroutine finished
	// launch, set by start, serves the started command; it runs only after the request that
	// started it was answered, so that its exit status and close always follow the reply.
	launch func()
	// remove is the file of a program request, removed when its command has ended, before the
	// exit status tells the client so.
	remove string
}

func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request, log *slog.Logger) {
	ss := &session{srv: s, ch: ch, log: log, dir: s.cfg.Home, done: make(chan struct{})}
	for req := range reqs {
		ok := ss.handle(req)
		if req.WantReply {
			_ = req.Reply(ok, nil) // fails only when the client is gone
		}
		if ss.launch != nil {
			go ss.launch()
			ss.launch = nil
		}
	}
	// The client closed the channel: nothing of this session may keep running.
	ss.mu.Lock()
	ss.closed = true
	p, started := ss.proc, ss.started
	ss.mu.Unlock()
	if p != nil {
		p.killGroup()
	}
	if started {
		<-ss.done
	}
	ch.Close()
}

// handle serves one channel request and reports whether it succeeded.
func (ss *session) handle(req *ssh.Request) bool {
	switch req.Type {
	case "env":
		var kv struct{ Name, Value string }
		if ssh.Unmarshal(req.Payload, &kv) != nil {
			return false
		}
		return ss.setenv(kv.Name, kv.Value)
	case "exec":
		var cmd struct{ Command string }
		if ssh.Unmarshal(req.Payload, &cmd) != nil {
			return false
		}
		if prog, ok, err := wire.DecodeProgram(cmd.Command); ok {
			if err != nil {
				ss.log.Warn("bad program request", "err", err)
				return false
			}
			if prog.Inline {
				return ss.startInlineProgram(prog)
			}
			return ss.startProgram(prog.Interp)
		}
		argv, line, isArgv, err := wire.DecodeExec(cmd.Command)
		if err != nil {
			ss.log.Warn("bad exec request", "err", err)
			return false
		}
		if isArgv && argv[0] == wire.AptInstallCommand {
			return ss.startAptInstall(argv[1:])
		}
		if !isArgv {
			argv = []string{ss.srv.cfg.Shell, "-c", line}
		}
		return ss.start(ss.userCommand(argv), true)
	case "shell":
		return ss.start(ss.userCommand([]string{ss.srv.cfg.Shell}), true)
	case "subsystem":
		var sub struct{ Name string }
		if ssh.Unmarshal(req.Payload, &sub) != nil || sub.Name != wire.SFTPSubsystem {
			return false
		}
		return ss.start(ss.userCommand(ss.srv.cfg.SFTPCommand), false)
	case "signal":
		var sig struct{ Signal string }
		if ssh.Unmarshal(req.Payload, &sig) != nil {
			return false
		}
		return ss.signal(sig.Signal)
	default: // pty-req, x11-req, agent forwarding, window-change...
		return false
	}
}

func (ss *session) setenv(name, value string) bool {
	if name == wire.DirEnv {
		if value != "" {
			// A relative directory is relative to the home directory, like SFTP paths.
			ss.dir = filepath.Join(ss.srv.cfg.Home, value)
			if filepath.IsAbs(value) {
				ss.dir = value
			}
		}
		return true
	}
	if !envAllowed(ss.srv.cfg.EnvAllow, name) {
		ss.log.Debug("env request refused", "name", name)
		return false
	}
	ss.env = append(ss.env, name+"="+value)
	return true
}

// envAllowed reports whether name matches one of the allow-list entries.
func envAllowed(allow []string, name string) bool {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return false
	}
	for _, a := range allow {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if a == name {
			return true
		}
	}
	return false
}

// environ is the complete environment of the session's command: fixed variables first, so the
// client's allowed ones override LANG and friends but never HOME, USER or PATH (not allowed).
func (ss *session) environ() []string {
	c := ss.srv.cfg
	env := []string{"HOME=" + c.Home, "USER=" + c.UserName, "LOGNAME=" + c.UserName, "SHELL=" + c.Shell, "PATH=" + c.Path}
	env = append(env, c.Env...)
	return append(env, ss.env...)
}

// userCommand is argv as every command of a session runs: as the sandbox user, with the
// session's environment and directory.
func (ss *session) userCommand(argv []string) command {
	c := ss.srv.cfg
	return command{argv: argv, env: ss.environ(), dir: ss.dir, cred: c.Credential, tracker: c.Tracker}
}

// aptEnviron is the whole environment of the package installer: nothing of the session's.
func aptEnviron() []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive"}
}

// startAptInstall starts the privileged package installer for the Debian package names, if
// the guest has one and the names are valid (see wire.AptInstallCommand): Config.AptInstall,
// then "--" and the names, as root with full privileges, the fixed aptEnviron, in /. The
// request's stdin is the installer's (the extra apt keys).
func (ss *session) startAptInstall(names []string) bool {
	c := ss.srv.cfg
	err := wire.CheckAptPackages(names)
	if len(c.AptInstall) == 0 || c.Privileged == nil {
		err = errors.New("this guest has no package installer")
	}
	if err != nil {
		ss.log.Warn("apt install refused", "err", err)
		return ss.failBeforeStart(2, fmt.Errorf("apt install refused: %w", err))
	}
	ss.log.Info("apt install", "packages", names)
	argv := append(append(slices.Clone(c.AptInstall), "--"), names...)
	return ss.start(command{argv: argv, env: aptEnviron(), dir: "/", tracker: c.Privileged}, true)
}

// start starts the session's one command. A command that cannot be found or started still gets
// an accepted request, a message on stderr and exit status 127 or 126, as a shell would do; for
// the SFTP server (report=false) a failure refuses the request.
func (ss *session) start(cmd command, report bool) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.started {
		return false
	}
	argv0 := cmd.argv[0]
	p, code, err := ss.srv.spawn(cmd)
	if err != nil {
		ss.log.Debug("command did not start", "argv0", argv0, "err", err)
		if !report {
			return false
		}
		ss.failLocked(code, err)
		return true
	}
	ss.started, ss.proc = true, p
	ss.log.Debug("command started", "argv0", argv0, "pid", p.pid())
	ss.launch = func() {
		defer close(ss.done)
		ss.serve(p, argv0)
	}
	return true
}

// startInlineProgram starts the session's one command as a program request that carries its
// source (see wire.EncodeProgram): the source is saved and the interpreter started as start
// does, before the request is answered. Failures are reported like start's, with exit status
// 126 when the source cannot be saved.
func (ss *session) startInlineProgram(prog wire.Program) bool {
	path, err := ss.srv.saveProgram(bytes.NewReader(prog.Source))
	if err != nil {
		return ss.failBeforeStart(126, err)
	}
	if !ss.start(ss.userCommand(append(slices.Clone(prog.Interp), path)), true) {
		os.Remove(path)
		return false
	}
	ss.remove = path
	return true
}

// startProgram starts the session's one command as a program request (see
// wire.EncodeProgram): once the request is answered, the source is read from stdin and saved,
// and interp runs it. Failures are reported like start's, with exit status 126 when the source
// cannot be saved.
func (ss *session) startProgram(interp []string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.started {
		return false
	}
	ss.started = true
	ss.launch = func() {
		defer close(ss.done)
		path, err := ss.srv.saveProgram(ss.ch)
		if err != nil {
			ss.fail(err, 126)
			return
		}
		ss.remove = path
		argv := append(slices.Clone(interp), path)
		p, code, err := ss.srv.spawn(ss.userCommand(argv))
		if err != nil {
			ss.fail(err, code)
			return
		}
		ss.mu.Lock()
		ss.proc = p
		closed := ss.closed
		ss.mu.Unlock()
		if closed { // the client gave up while the source came in
			p.killGroup()
		}
		ss.log.Debug("program started", "argv0", argv[0], "pid", p.pid())
		ss.serve(p, argv[0])
	}
	return true
}

// serve connects a started command to the channel until it ends and reports how it ended.
func (ss *session) serve(p *process, argv0 string) {
	st := p.run(ss.ch, ss.srv.cfg.OutputGrace)
	ss.log.Debug("command finished", "argv0", argv0, "pid", p.pid(), "status", st.code, "signal", st.signal)
	ss.finish(st)
}

// fail reports a command that did not start: a message on stderr and exit status code.
func (ss *session) fail(err error, code int) {
	fmt.Fprintf(ss.ch.Stderr(), "waggle: %v\n", err)
	ss.finish(exitStatus{code: code})
}

// failBeforeStart ends the session's one command before it ran (err on stderr, then exit
// status code) and reports whether the request is accepted: not if a command started already.
func (ss *session) failBeforeStart(code int, err error) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.started {
		return false
	}
	ss.failLocked(code, err)
	return true
}

// failLocked ends the session's command before it ran: err on stderr, then exit status code.
func (ss *session) failLocked(code int, err error) {
	ss.started = true
	ss.launch = func() {
		defer close(ss.done)
		ss.fail(err, code)
	}
}

// finish reports the exit status and closes the channel. Errors mean the client is gone, and
// there is no one left to tell.
func (ss *session) finish(st exitStatus) {
	if ss.remove != "" {
		os.Remove(ss.remove)
	}
	_ = ss.ch.CloseWrite()
	if st.signal != "" {
		_, _ = ss.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: st.signal, CoreDumped: st.core}))
	} else {
		_, _ = ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(st.code)}))
	}
	ss.ch.Close()
}

func (ss *session) signal(name string) bool {
	sig, ok := signalByName(name)
	if !ok {
		return false
	}
	ss.mu.Lock()
	p := ss.proc
	ss.mu.Unlock()
	if p == nil {
		return false
	}
	return p.signalGroup(sig) == nil
}
