// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostrpc

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/waggle-dev/waggle/internal/aptname"
)

// HomeDir is the sandbox user's home in a guest: the directory list_files shows by default.
const HomeDir = "/home/sandbox"

// MinTimeout is the shortest timeout any call may ask for.
const MinTimeout = time.Second

// MaxProcessIDBytes bounds a process id (start_process makes them much shorter).
const MaxProcessIDBytes = 64

// Timeouts is the allowed range of one kind of timeout: a request that names none gets
// Default; one outside MinTimeout..Max is refused.
type Timeouts struct {
	Default, Max time.Duration
}

// Limits bound the host RPC requests. They are one set shared by both sides of the contract:
// a router checks each call against them before it forwards it, and a host agent checks every
// request against them again, so that a request that bypassed a router is refused the same way
// (never clamped). The Check methods fill defaults into a request and return an *Error with
// CodeBadRequest or CodeTooLarge whose message names what is allowed.
type Limits struct {
	// MaxCodeBytes bounds the code of exec and process_start.
	MaxCodeBytes int
	// MaxFileBytes bounds a file that write_file or read_file moves.
	MaxFileBytes int
	// MaxPathBytes bounds a guest path.
	MaxPathBytes int
	// MaxPackages bounds the package specs of one install; MaxPackageSpecBytes one spec.
	MaxPackages, MaxPackageSpecBytes int
	// MaxOutputBytes caps each output stream of a command; a host cuts more to fit its reply.
	MaxOutputBytes int
	// MaxListEntries bounds the entries of one directory listing.
	MaxListEntries int
	// MaxProcesses bounds the background processes of one environment (running, or ended and
	// not yet read).
	MaxProcesses int
	// Timeouts of exec, of background processes, of one process_wait, and of install.
	Exec, Process, ProcessWait, Install Timeouts
}

// DefaultLimits are the limits of a router and a host agent that set none.
func DefaultLimits() Limits {
	return Limits{
		MaxCodeBytes:        512_000,
		MaxFileBytes:        32 << 20,
		MaxPathBytes:        4096,
		MaxPackages:         50,
		MaxPackageSpecBytes: 256,
		MaxOutputBytes:      1 << 20,
		MaxListEntries:      10_000,
		MaxProcesses:        16,
		Exec:                Timeouts{Default: 30 * time.Second, Max: 5 * time.Minute},
		Process:             Timeouts{Default: 10 * time.Minute, Max: time.Hour},
		ProcessWait:         Timeouts{Default: 30 * time.Second, Max: 50 * time.Second},
		Install:             Timeouts{Default: 5 * time.Minute, Max: 5 * time.Minute},
	}
}

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	for _, n := range []struct {
		name string
		v    int
	}{
		{"max code bytes", l.MaxCodeBytes}, {"max file bytes", l.MaxFileBytes}, {"max path bytes", l.MaxPathBytes},
		{"max packages", l.MaxPackages}, {"max package spec bytes", l.MaxPackageSpecBytes},
		{"max output bytes", l.MaxOutputBytes}, {"max list entries", l.MaxListEntries}, {"max processes", l.MaxProcesses},
	} {
		if n.v < 1 {
			return fmt.Errorf("limits: %s %d < 1", n.name, n.v)
		}
	}
	for _, t := range []struct {
		name string
		r    Timeouts
	}{{"exec", l.Exec}, {"process", l.Process}, {"process wait", l.ProcessWait}, {"install", l.Install}} {
		if t.r.Default < MinTimeout || t.r.Max < t.r.Default {
			return fmt.Errorf("limits: %s timeout: default %s, max %s (both at least %s, default at most max)", t.name, t.r.Default, t.r.Max, MinTimeout)
		}
	}
	return nil
}

// Error is the body of an error reply (and the micro service's error header carries Code); as
// an error it is a request refused for what Code says.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, a ...any) error {
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf(format, a...)}
}

func tooLarge(format string, a ...any) error {
	return &Error{Code: CodeTooLarge, Message: fmt.Sprintf(format, a...)}
}

// Timeout is t, or r.Default when t is 0, if it lies in MinTimeout..r.Max; otherwise an error
// naming the allowed range of timeout_seconds.
func (r Timeouts) Timeout(t time.Duration) (time.Duration, error) {
	if t == 0 {
		t = r.Default
	}
	if t < MinTimeout || t > r.Max {
		return 0, badRequest("timeout_seconds %g is out of range: use %d to %d (default %d)",
			t.Seconds(), int(MinTimeout.Seconds()), int(r.Max.Seconds()), int(r.Default.Seconds()))
	}
	return t, nil
}

// CheckPath is the one rule for guest paths: absolute, at most MaxPathBytes, no NUL byte. It
// returns the path cleaned (no "..", "." or repeated slashes).
func (l Limits) CheckPath(p string) (string, error) {
	switch {
	case p == "":
		return "", badRequest("path is empty: give an absolute path such as %s/main.py", HomeDir)
	case len(p) > l.MaxPathBytes:
		return "", badRequest("path is %d bytes; the limit is %d bytes", len(p), l.MaxPathBytes)
	case strings.ContainsRune(p, 0):
		return "", badRequest("path %q contains a NUL byte", p)
	case !path.IsAbs(p):
		return "", badRequest("path %q is not absolute: start it with /, e.g. %s", p, path.Join(HomeDir, p))
	}
	return path.Clean(p), nil
}

// CheckCode checks the code of exec and process_start: 1 to MaxCodeBytes bytes.
func (l Limits) CheckCode(code string) error {
	switch {
	case code == "":
		return badRequest("code is empty: give the program to run")
	case len(code) > l.MaxCodeBytes:
		return tooLarge("code is %d bytes; the limit is %d bytes: write it to a file with write_file and run that", len(code), l.MaxCodeBytes)
	}
	return nil
}

// CheckFileSize checks the size of a file's content against MaxFileBytes.
func (l Limits) CheckFileSize(n int) error {
	if n > l.MaxFileBytes {
		return tooLarge("content is %d bytes; the limit is %d bytes per file", n, l.MaxFileBytes)
	}
	return nil
}

// CheckExec checks an exec request and fills its default timeout.
func (l Limits) CheckExec(req *ExecRequest) error { return l.checkRun(req.Code, &req.Timeout, l.Exec) }

// CheckProcessStart checks a process_start request and fills its default timeout.
func (l Limits) CheckProcessStart(req *ProcessStartRequest) error {
	return l.checkRun(req.Code, &req.Timeout, l.Process)
}

// checkRun checks the code and the timeout (range r, default filled in) of a command.
func (l Limits) checkRun(code string, timeout *time.Duration, r Timeouts) error {
	if err := l.CheckCode(code); err != nil {
		return err
	}
	var err error
	*timeout, err = r.Timeout(*timeout)
	return err
}

// CheckProcess checks a process_read, process_wait or process_kill request (op) and fills the
// default wait of process_wait; the others take no timeout.
func (l Limits) CheckProcess(op string, req *ProcessRequest) error {
	if req.ProcessID == "" || len(req.ProcessID) > MaxProcessIDBytes {
		return badRequest("process_id %q is invalid: give the id start_process returned", req.ProcessID)
	}
	if op != OpProcessWait {
		if req.Timeout != 0 {
			return badRequest("%s takes no timeout", op)
		}
		return nil
	}
	var err error
	req.Timeout, err = l.ProcessWait.Timeout(req.Timeout)
	return err
}

// CheckWriteFile checks a write_file request and cleans its path. Content that travels as a
// transfer object is checked with CheckFileSize once it has been read.
func (l Limits) CheckWriteFile(req *WriteFileRequest) error {
	var err error
	if req.Path, err = l.CheckPath(req.Path); err != nil {
		return err
	}
	switch {
	case req.ContentRef != "" && len(req.Content) > 0:
		return badRequest("write_file: give content or content_ref, not both")
	case req.Mode > 0o7777:
		return badRequest("mode %#o is invalid: give permission bits (at most 07777)", req.Mode)
	}
	return l.CheckFileSize(len(req.Content))
}

// CheckReadFile checks a read_file request and cleans its path; Max becomes the smaller of the
// caller's limit (0: none) and MaxFileBytes.
func (l Limits) CheckReadFile(req *ReadFileRequest) error {
	var err error
	if req.Path, err = l.CheckPath(req.Path); err != nil {
		return err
	}
	if req.Max < 0 {
		return badRequest("max %d is negative", req.Max)
	}
	if req.Max == 0 || req.Max > int64(l.MaxFileBytes) {
		req.Max = int64(l.MaxFileBytes)
	}
	return nil
}

// CheckListFiles checks a list_files request and cleans its path; an empty path is HomeDir.
func (l Limits) CheckListFiles(req *ListFilesRequest) error {
	if req.Path == "" {
		req.Path = HomeDir
	}
	var err error
	req.Path, err = l.CheckPath(req.Path)
	return err
}

// CheckInstall checks an install request for an environment of runtime, by that runtime's
// PackageRule, and fills its default timeout.
func (l Limits) CheckInstall(runtime string, req *InstallRequest) error {
	switch {
	case len(req.Packages) == 0:
		return badRequest("packages is empty: give space-separated package names, e.g. \"requests numpy==2.1.0\"")
	case len(req.Packages) > l.MaxPackages:
		return tooLarge("%d packages named; at most %d per call", len(req.Packages), l.MaxPackages)
	}
	rule, err := PackageRuleOf(runtime)
	if err != nil {
		return err
	}
	for _, s := range req.Packages {
		if len(s) > l.MaxPackageSpecBytes {
			return badRequest("package spec %.40q is %d bytes; the limit is %d bytes", s, len(s), l.MaxPackageSpecBytes)
		}
		if !rule.Pattern.MatchString(s) {
			return badRequest("invalid %s package spec %q: use a name with an optional version, e.g. %s", rule.Manager, s, rule.Examples)
		}
	}
	req.Timeout, err = l.Install.Timeout(req.Timeout)
	return err
}

// PackageRule is how install_packages names packages in the environments of one runtime.
type PackageRule struct {
	Manager  string         // the package manager, as errors name it
	Pattern  *regexp.Regexp // one package spec
	Examples string         // valid specs, for errors
}

// Package spec patterns: a name starts with a letter or digit (never '-', so it cannot be read
// as an option), then optional extras and a version spec; no whitespace, quotes, shell
// characters, URLs or paths.
var (
	pipSpec = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?` +
		`(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?` +
		`((===|==|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+(,(===|==|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+)*)?$`)
	npmSpec = regexp.MustCompile(`^(@[a-z0-9][a-z0-9._~-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*` +
		`(@[A-Za-z0-9.^~<>=*+_-]+)?$`)
)

// PackageRuleOf is the package rule of runtime's environments, or an error saying why they
// cannot install packages.
func PackageRuleOf(runtime string) (PackageRule, error) {
	switch runtime {
	case "python":
		return PackageRule{Manager: "pip", Pattern: pipSpec, Examples: "requests, numpy==2.1.0, uvicorn[standard]>=0.30,<1"}, nil
	case "node":
		return PackageRule{Manager: "npm", Pattern: npmSpec, Examples: "lodash, left-pad@1.3.0, @types/node@20"}, nil
	case "shell":
		return PackageRule{Manager: "apt", Pattern: aptname.Pattern, Examples: "curl, g++, jq=1.6-2.1"}, nil
	}
	return PackageRule{}, badRequest("install_packages does not know runtime %q", runtime)
}
