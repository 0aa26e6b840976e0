// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Selector picks events by host, environment and type; empty fields match anything.
type Selector struct {
	Host string
	Env  string
	Type string
}

// Subjects are the stream filter subjects that select exactly the events s describes; nil means
// every event. An environment or host selects its environment events (and, for a host without
// an environment, its lifecycle events); a type alone selects that type in every kind.
func (s Selector) Subjects() ([]string, error) {
	for _, f := range []struct{ name, v string }{{"host", s.Host}, {"env", s.Env}, {"type", s.Type}} {
		if f.v == "" {
			continue
		}
		if err := ValidID(f.v); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	host, env, typ := or(s.Host, "*"), or(s.Env, "*"), or(s.Type, "*")
	switch {
	case s == Selector{}:
		return nil, nil
	case s.Env != "":
		return []string{EnvSubject(host, env, typ)}, nil
	case s.Host != "":
		return []string{EnvSubject(host, "*", typ), HostSubject(host, typ)}, nil
	default:
		return []string{EnvSubject("*", "*", typ), HostSubject("*", typ), AuditSubject(typ)}, nil
	}
}

func or(v, dflt string) string {
	if v == "" {
		return dflt
	}
	return v
}

// maxSummary is the length a Summary is cut to.
const maxSummary = 120

// Summary is a one-line digest of the event's data for people: its top-level fields as
// key=value in key order, nested values as compact JSON, cut to about 120 characters.
func (e *Event) Summary() string {
	if len(e.Data) == 0 {
		return ""
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(e.Data, &fields); err != nil {
		return cut(string(e.Data))
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		var v bytes.Buffer
		_ = json.Compact(&v, fields[k]) // valid: it was just parsed
		var str string
		val := v.String()
		if json.Unmarshal(v.Bytes(), &str) == nil && str != "" && !strings.ContainsAny(str, " \t\r\n\"=") {
			val = str // plain strings unquoted; others stay JSON, so the line stays one line
		}
		fmt.Fprintf(&b, "%s=%s", k, val)
	}
	return cut(b.String())
}

func cut(s string) string {
	if len(s) <= maxSummary {
		return s
	}
	n := maxSummary - 3
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
