package mcp

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// argError is a caller's mistake in a tool's arguments; its text goes back as the tool error.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func argErrorf(format string, a ...any) error { return &argError{msg: fmt.Sprintf(format, a...)} }

// maxArgInt bounds integer arguments before any range check, so conversions cannot overflow.
const maxArgInt = 1 << 31

// args reads one call's arguments, refusing names the tool does not take.
type args struct {
	tool string
	m    map[string]any
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
	return &args{tool: tool, m: m}, nil
}

// str reads a string argument; a required one must be present and non-empty.
func (a *args) str(name string, required bool) (string, error) {
	v, ok := a.m[name]
	if !ok || v == nil {
		if required {
			return "", argErrorf("%s is required", name)
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", argErrorf("%s must be a string, not %s", name, jsonType(v))
	}
	if required && s == "" {
		return "", argErrorf("%s is required and must not be empty", name)
	}
	return s, nil
}

// enum reads an optional string argument that must be one of values (or empty).
func (a *args) enum(name string, required bool, values ...string) (string, error) {
	s, err := a.str(name, required)
	if err != nil || s == "" {
		return s, err
	}
	if !slices.Contains(values, s) {
		return "", argErrorf("%s %q is not allowed: use one of %s", name, s, strings.Join(values, ", "))
	}
	return s, nil
}

// integer reads an optional whole-number argument (0 when absent). Numbers written as strings
// are accepted, since some clients send them that way.
func (a *args) integer(name string) (int, error) {
	v, ok := a.m[name]
	if !ok || v == nil {
		return 0, nil
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
			return 0, argErrorf("%s must be a whole number, not %q", name, n.String())
		}
		f = x
	case string:
		x, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			return 0, argErrorf("%s must be a whole number, not %q", name, n)
		}
		f = x
	default:
		return 0, argErrorf("%s must be a whole number, not %s", name, jsonType(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, argErrorf("%s must be a whole number, not %v", name, v)
	}
	if math.Abs(f) > maxArgInt {
		return 0, argErrorf("%s %v is out of range", name, v)
	}
	return int(f), nil
}

// boolean reads an optional boolean argument.
func (a *args) boolean(name string) (bool, error) {
	v, ok := a.m[name]
	if !ok || v == nil {
		return false, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		if p, err := strconv.ParseBool(b); err == nil {
			return p, nil
		}
	}
	return false, argErrorf("%s must be true or false, not %v", name, v)
}

// words reads a list argument given either as a space-separated string or an array of strings.
func (a *args) words(name string) (string, error) {
	v, ok := a.m[name]
	if !ok || v == nil {
		return "", argErrorf("%s is required", name)
	}
	switch w := v.(type) {
	case string:
		if strings.TrimSpace(w) == "" {
			return "", argErrorf("%s is required and must not be empty", name)
		}
		return w, nil
	case []any:
		parts := make([]string, 0, len(w))
		for _, x := range w {
			s, ok := x.(string)
			if !ok || strings.TrimSpace(s) == "" {
				return "", argErrorf("%s must hold non-empty strings", name)
			}
			parts = append(parts, s)
		}
		if len(parts) == 0 {
			return "", argErrorf("%s is required and must not be empty", name)
		}
		return strings.Join(parts, " "), nil
	}
	return "", argErrorf("%s must be a string of space-separated names, not %s", name, jsonType(v))
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
	defaultDir   = "/home/sandbox"
	toolCreate   = "create_environment"
	toolDestroy  = "destroy_environment"
	toolList     = "list_environments"
	toolGet      = "get_environment"
	toolExecute  = "execute"
	toolInstall  = "install_packages"
	toolWrite    = "write_file"
	toolRead     = "read_file"
	toolListFile = "list_files"
)

type createArgs struct {
	Runtime, Name                   string
	TimeoutMinutes, CPUs, MemoryMiB int
}

func decodeCreate(raw any, runtimes []string) (createArgs, error) {
	a, err := newArgs(toolCreate, raw, "runtime", "name", "timeout_minutes", "cpus", "memory_mib")
	if err != nil {
		return createArgs{}, err
	}
	var c createArgs
	if c.Runtime, err = a.enum("runtime", true, runtimes...); err != nil {
		return c, err
	}
	if c.Name, err = a.str("name", false); err != nil {
		return c, err
	}
	if c.TimeoutMinutes, err = a.integer("timeout_minutes"); err != nil {
		return c, err
	}
	if c.CPUs, err = a.integer("cpus"); err != nil {
		return c, err
	}
	if c.MemoryMiB, err = a.integer("memory_mib"); err != nil {
		return c, err
	}
	return c, nil
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
	return a.str(argEnv, true)
}

type execArgs struct {
	Env, Code, Language string
	TimeoutSeconds      int
}

func decodeExec(raw any, languages []string) (execArgs, error) {
	a, err := newArgs(toolExecute, raw, argEnv, "code", "language", "timeout_seconds")
	if err != nil {
		return execArgs{}, err
	}
	var e execArgs
	if e.Env, err = a.str(argEnv, true); err != nil {
		return e, err
	}
	if e.Code, err = a.str("code", true); err != nil {
		return e, err
	}
	if e.Language, err = a.enum("language", false, languages...); err != nil {
		return e, err
	}
	if e.TimeoutSeconds, err = a.integer("timeout_seconds"); err != nil {
		return e, err
	}
	return e, nil
}

type installArgs struct{ Env, Packages string }

func decodeInstall(raw any) (installArgs, error) {
	a, err := newArgs(toolInstall, raw, argEnv, "packages")
	if err != nil {
		return installArgs{}, err
	}
	var i installArgs
	if i.Env, err = a.str(argEnv, true); err != nil {
		return i, err
	}
	i.Packages, err = a.words("packages")
	return i, err
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
	var f fileArgs
	if f.Env, err = a.str(argEnv, true); err != nil {
		return f, err
	}
	if f.Path, err = a.str(argPath, true); err != nil {
		return f, err
	}
	if f.Content, err = a.str("content", false); err != nil {
		return f, err
	}
	f.Encoding, err = a.enum(argEncoding, false, encUTF8, encBase64)
	return f, err
}

func decodeRead(raw any) (fileArgs, error) {
	a, err := newArgs(toolRead, raw, argEnv, argPath, argEncoding)
	if err != nil {
		return fileArgs{}, err
	}
	var f fileArgs
	if f.Env, err = a.str(argEnv, true); err != nil {
		return f, err
	}
	if f.Path, err = a.str(argPath, true); err != nil {
		return f, err
	}
	f.Encoding, err = a.enum(argEncoding, false, encUTF8, encBase64)
	return f, err
}

func decodeListFiles(raw any) (fileArgs, error) {
	a, err := newArgs(toolListFile, raw, argEnv, argPath, "recursive")
	if err != nil {
		return fileArgs{}, err
	}
	var f fileArgs
	if f.Env, err = a.str(argEnv, true); err != nil {
		return f, err
	}
	if f.Path, err = a.str(argPath, false); err != nil {
		return f, err
	}
	if f.Path == "" {
		f.Path = defaultDir
	}
	f.Recursive, err = a.boolean("recursive")
	return f, err
}
