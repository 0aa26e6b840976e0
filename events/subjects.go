// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"fmt"
	"regexp"
	"strings"
)

// Stream and subject names.
const (
	StreamName    = "WAGGLE_EVENTS"
	SubjectPrefix = "waggle"
	// AllSubjects matches every waggle subject; as a reader filter it selects every event. The
	// stream itself stores only StreamSubjects (not, e.g., the host RPC subjects).
	AllSubjects = "waggle.>"
)

// idPattern is what host and environment ids may contain: they become subject tokens.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether id can be used as a host or environment id.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid id %q: use 1-64 letters, digits, '-' or '_'", id)
	}
	return nil
}

// EnvSubject is the subject of one environment event.
func EnvSubject(host, env, typ string) string {
	return "waggle.env." + host + "." + env + "." + typ
}

// EnvAggregate is the wildcard subject covering every event of one environment.
func EnvAggregate(host, env string) string { return "waggle.env." + host + "." + env + ".>" }

// HostEnvs is the wildcard subject covering every environment event placed on one host.
func HostEnvs(host string) string { return "waggle.env." + host + ".>" }

// HostSubject is the subject of one host lifecycle event.
func HostSubject(host, typ string) string { return "waggle.host." + host + "." + typ }

// HostAggregate is the wildcard subject covering every lifecycle event of one host.
func HostAggregate(host string) string { return "waggle.host." + host + ".>" }

// AuditSubject is the subject of an audit record such as a digest.
func AuditSubject(kind string) string { return "waggle.audit." + kind }

// SubjectOf is the subject an event is stored under, derived from its kind, ids and type.
func SubjectOf(ev *Event) (string, error) {
	if err := ValidID(ev.Type); err != nil {
		return "", fmt.Errorf("event type: %w", err)
	}
	switch {
	case ev.Env != "":
		if err := ValidID(ev.Host); err != nil {
			return "", fmt.Errorf("event %s: host: %w", ev.Type, err)
		}
		if err := ValidID(ev.Env); err != nil {
			return "", fmt.Errorf("event %s: env: %w", ev.Type, err)
		}
		return EnvSubject(ev.Host, ev.Env, ev.Type), nil
	case ev.Host != "":
		if err := ValidID(ev.Host); err != nil {
			return "", fmt.Errorf("event %s: host: %w", ev.Type, err)
		}
		return HostSubject(ev.Host, ev.Type), nil
	default:
		return AuditSubject(ev.Type), nil
	}
}

// AggregateOf is the wildcard subject of the aggregate an event belongs to; audit events are
// their own aggregate (their exact subject).
func AggregateOf(ev *Event) string {
	switch {
	case ev.Env != "":
		return EnvAggregate(ev.Host, ev.Env)
	case ev.Host != "":
		return HostAggregate(ev.Host)
	default:
		return AuditSubject(ev.Type)
	}
}

// ParsedSubject is what a stored subject says about its event.
type ParsedSubject struct {
	Kind string // "env", "host" or "audit"
	Host string
	Env  string
	Type string
}

// ParseSubject splits a stored subject into its parts; each id and the type must be a ValidID.
func ParseSubject(subject string) (ParsedSubject, error) {
	parts := strings.Split(subject, ".")
	if len(parts) < 3 || parts[0] != SubjectPrefix {
		return ParsedSubject{}, fmt.Errorf("not a waggle event subject: %q", subject)
	}
	for _, p := range parts[2:] {
		if ValidID(p) != nil {
			return ParsedSubject{}, fmt.Errorf("not a waggle event subject: %q: token %q", subject, p)
		}
	}
	switch {
	case parts[1] == "env" && len(parts) == 5:
		return ParsedSubject{Kind: "env", Host: parts[2], Env: parts[3], Type: parts[4]}, nil
	case parts[1] == "host" && len(parts) == 4:
		return ParsedSubject{Kind: "host", Host: parts[2], Type: parts[3]}, nil
	case parts[1] == "audit" && len(parts) == 3:
		return ParsedSubject{Kind: "audit", Type: parts[2]}, nil
	}
	return ParsedSubject{}, fmt.Errorf("not a waggle event subject: %q", subject)
}
