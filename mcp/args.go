// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/waggle-dev/waggle/events"
)

// argError is a caller's mistake in a tool's arguments; its text goes back as the tool error.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func argErrorf(format string, a ...any) error { return &argError{msg: fmt.Sprintf(format, a...)} }

// maxArgInt bounds integer arguments before any range check, so conversions cannot overflow.
const maxArgInt = 1 << 31

// args reads one call's arguments, refusing names the tool does not take. The readers keep
// the first error (later readers then return zero values); err reports it.
type args struct {
	m   map[string]any
	err error
}

// newArgs checks that raw is an object whose keys are all in allowed.
func newArgs(tool string, raw any, allowed ...string) (*args, error) {
	var m map[string]any
	switch v := raw.(type) {
	case nil:
		m = map[string]any{}
	case map[string]any:
		m = v
	default:
		return nil, argErrorf("%s: arguments must be a JSON object", tool)
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			names := append([]string(nil), allowed...)
			sort.Strings(names)
			takes := "no arguments"
			if len(names) > 0 {
				takes = strings.Join(names, ", ")
			}
			return nil, argErrorf("%s: unknown argument %q; it takes %s", tool, k, takes)
		}
	}
	return &args{m: m}, nil
}

// get returns the value of argument name, or false when it is absent (or null) or an earlier
// argument failed.
func (a *args) get(name string) (any, bool) {
	v, ok := a.m[name]
	return v, a.err == nil && ok && v != nil
}

// failf records an argument error unless an earlier one is recorded.
func (a *args) failf(format string, v ...any) {
	if a.err == nil {
		a.err = argErrorf(format, v...)
	}
}

// str reads a string argument; a required one must be present and non-empty.
func (a *args) str(name string, required bool) string {
	v, ok := a.get(name)
	if !ok {
		if required {
			a.failf("%s is required", name)
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		a.failf("%s must be a string, not %s", name, jsonType(v))
		return ""
	}
	if required && s == "" {
		a.failf("%s is required and must not be empty", name)
	}
	return s
}

// enum reads a string argument that must be one of values (or empty when not required).
func (a *args) enum(name string, required bool, values ...string) string {
	s := a.str(name, required)
	if s != "" && !slices.Contains(values, s) {
		a.failf("%s %q is not allowed: use one of %s", name, s, strings.Join(values, ", "))
		return ""
	}
	return s
}

// integer reads an optional whole-number argument (0 when absent). Numbers written as strings
// are accepted, since some clients send them that way.
func (a *args) integer(name string) int {
	v, ok := a.get(name)
	if !ok {
		return 0
	}
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case json.Number:
		x, err := n.Float64()
		if err != nil {
			a.failf("%s must be a whole number, not %q", name, n.String())
			return 0
		}
		f = x
	case string:
		x, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			a.failf("%s must be a whole number, not %q", name, n)
			return 0
		}
		f = x
	default:
		a.failf("%s must be a whole number, not %s", name, jsonType(v))
		return 0
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		a.failf("%s must be a whole number, not %v", name, v)
		return 0
	}
	if math.Abs(f) > maxArgInt {
		a.failf("%s %v is out of range", name, v)
		return 0
	}
	return int(f)
}

// boolean reads an optional boolean argument.
func (a *args) boolean(name string) bool {
	v, ok := a.get(name)
	if !ok {
		return false
	}
	switch b := v.(type) {
	case bool:
		return b
	case string:
		if p, err := strconv.ParseBool(b); err == nil {
			return p
		}
	}
	a.failf("%s must be true or false, not %v", name, v)
	return false
}

// words reads a required list argument given either as a space-separated string or an array
// of strings (each of them space-separated words too).
func (a *args) words(name string) []string {
	v, ok := a.get(name)
	if !ok {
		a.failf("%s is required", name)
		return nil
	}
	var parts []string
	switch w := v.(type) {
	case string:
		parts = strings.Fields(w)
	case []any:
		for _, x := range w {
			s, ok := x.(string)
			if !ok {
				a.failf("%s must hold strings, not %s", name, jsonType(x))
				return nil
			}
			parts = append(parts, strings.Fields(s)...)
		}
	default:
		a.failf("%s must be a string of space-separated names, not %s", name, jsonType(v))
		return nil
	}
	if len(parts) == 0 {
		a.failf("%s is required and must not be empty", name)
	}
	return parts
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64, int, int64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Encodings of file content.
const (
	encUTF8   = "utf-8"
	encBase64 = "base64"
)

// Argument names shared by several tools.
const (
	argEnv       = "environment_id"
	argPath      = "path"
	argEncoding  = "encoding"
	toolCreate   = "create_environment"
	toolDestroy  = "destroy_environment"
	toolList     = "list_environments"
	toolGet      = "get_environment"
	toolExecute  = "execute"
	toolInstall  = "install_packages"
	toolWrite    = "write_file"
	toolRead     = "read_file"
	toolListFile = "list_files"
	toolStart    = "start_process"
	toolReadProc = "read_process"
	toolWaitProc = "wait_process"
	toolKillProc = "kill_process"
	toolPause    = "pause_environment"
	toolResume   = "resume_environment"
	toolFork     = "fork_environment"
	argProcess   = "process_id"
)

type createArgs struct {
	Runtime, Name, OnTimeout, IdempotencyKey string
	TimeoutMinutes, CPUs, MemoryMiB          int
}

// argIdempotencyKey names create_environment's idempotency key.
const argIdempotencyKey = "idempotency_key"

func decodeCreate(raw any, runtimes []string) (createArgs, error) {
	a, err := newArgs(toolCreate, raw, "runtime", "name", "timeout_minutes", "cpus", "memory_mib", "on_timeout", argIdempotencyKey)
	if err != nil {
		return createArgs{}, err
	}
	c := createArgs{
		Runtime:        a.enum("runtime", true, runtimes...),
		Name:           a.str("name", false),
		TimeoutMinutes: a.integer("timeout_minutes"),
		CPUs:           a.integer("cpus"),
		MemoryMiB:      a.integer("memory_mib"),
		IdempotencyKey: a.str(argIdempotencyKey, false),
		OnTimeout:      a.enum("on_timeout", false, events.OnTimeoutDestroy, events.OnTimeoutPause),
	}
	return c, a.err
}

// decodeFork reads the arguments of fork_environment: the source and an optional name.
func decodeFork(raw any) (env, name string, err error) {
	a, err := newArgs(toolFork, raw, argEnv, "name")
	if err != nil {
		return "", "", err
	}
	env, name = a.str(argEnv, true), a.str("name", false)
	return env, name, a.err
}

func decodeNone(tool string, raw any) error {
	_, err := newArgs(tool, raw)
	return err
}

func decodeEnvID(tool string, raw any) (string, error) {
	a, err := newArgs(tool, raw, argEnv)
	if err != nil {
		return "", err
	}
	id := a.str(argEnv, true)
	return id, a.err
}

type execArgs struct {
	Env, Code, Language string
	TimeoutSeconds      int
}

// decodeExec reads the arguments of execute and start_process (tool).
func decodeExec(tool string, raw any, languages []string) (execArgs, error) {
	a, err := newArgs(tool, raw, argEnv, "code", "language", "timeout_seconds")
	if err != nil {
		return execArgs{}, err
	}
	e := execArgs{
		Env:            a.str(argEnv, true),
		Code:           a.str("code", true),
		Language:       a.enum("language", false, languages...),
		TimeoutSeconds: a.integer("timeout_seconds"),
	}
	return e, a.err
}

type processArgs struct {
	Env, Process   string
	TimeoutSeconds int
}

// decodeProcess reads the arguments of read_process, kill_process and (withTimeout)
// wait_process.
func decodeProcess(tool string, raw any, withTimeout bool) (processArgs, error) {
	names := []string{argEnv, argProcess}
	if withTimeout {
		names = append(names, "timeout_seconds")
	}
	a, err := newArgs(tool, raw, names...)
	if err != nil {
		return processArgs{}, err
	}
	pa := processArgs{Env: a.str(argEnv, true), Process: a.str(argProcess, true), TimeoutSeconds: a.integer("timeout_seconds")}
	return pa, a.err
}

type installArgs struct {
	Env      string
	Packages []string
}

func decodeInstall(raw any) (installArgs, error) {
	a, err := newArgs(toolInstall, raw, argEnv, "packages")
	if err != nil {
		return installArgs{}, err
	}
	i := installArgs{Env: a.str(argEnv, true), Packages: a.words("packages")}
	return i, a.err
}

type fileArgs struct {
	Env, Path, Content, Encoding string
	Recursive                    bool
}

func decodeWrite(raw any) (fileArgs, error) {
	a, err := newArgs(toolWrite, raw, argEnv, argPath, "content", argEncoding)
	if err != nil {
		return fileArgs{}, err
	}
	f := fileArgs{
		Env:      a.str(argEnv, true),
		Path:     a.str(argPath, true),
		Content:  a.str("content", false),
		Encoding: a.enum(argEncoding, false, encUTF8, encBase64),
	}
	return f, a.err
}

func decodeRead(raw any) (fileArgs, error) {
	a, err := newArgs(toolRead, raw, argEnv, argPath, argEncoding)
	if err != nil {
		return fileArgs{}, err
	}
	f := fileArgs{
		Env:      a.str(argEnv, true),
		Path:     a.str(argPath, true),
		Encoding: a.enum(argEncoding, false, encUTF8, encBase64),
	}
	return f, a.err
}

func decodeListFiles(raw any) (fileArgs, error) {
	a, err := newArgs(toolListFile, raw, argEnv, argPath, "recursive")
	if err != nil {
		return fileArgs{}, err
	}
	f := fileArgs{
		Env:       a.str(argEnv, true),
		Path:      a.str(argPath, false),
		Recursive: a.boolean("recursive"),
	}
	return f, a.err
}
