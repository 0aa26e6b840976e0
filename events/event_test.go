// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		wantErr     bool
		wantVersion bool
	}{
		{"current", `{"id":"A","type":"placed","v":1,"env":"e","host":"h","data":{"host":"h"}}`, false, false},
		{"newer version", `{"id":"A","type":"placed","v":2}`, true, true},
		{"version zero", `{"id":"A","type":"placed"}`, true, true},
		{"no id", `{"type":"placed","v":1}`, true, false},
		{"garbage", `{"id":`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode([]byte(tt.raw))
			if (err != nil) != tt.wantErr || errors.Is(err, ErrUnknownVersion) != tt.wantVersion {
				t.Fatalf("Decode: %v", err)
			}
			if err == nil && string(ev.Raw) != tt.raw {
				t.Fatalf("Raw %q", ev.Raw)
			}
		})
	}
}

func TestSelectorSubjects(t *testing.T) {
	tests := []struct {
		sel     Selector
		want    string
		wantErr bool
	}{
		{Selector{}, "[]", false},
		{Selector{Env: "e1"}, "[waggle.env.*.e1.*]", false},
		{Selector{Host: "h1", Env: "e1", Type: EnvExec}, "[waggle.env.h1.e1.exec]", false},
		{Selector{Host: "h1"}, "[waggle.env.h1.*.* waggle.host.h1.*]", false},
		{Selector{Host: "h1", Type: "failed"}, "[waggle.env.h1.*.failed waggle.host.h1.failed]", false},
		{Selector{Type: AuditDigest}, "[waggle.env.*.*.digest waggle.host.*.digest waggle.audit.digest]", false},
		{Selector{Env: "e.1"}, "", true},
		{Selector{Type: ">"}, "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.sel), func(t *testing.T) {
			got, err := tt.sel.Subjects()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if err == nil && fmt.Sprint(got) != tt.want {
				t.Fatalf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		data, want string
	}{
		{``, ""},
		{`{"host":"h1"}`, "host=h1"},
		{`{"runtime":"python","resources":{"cpus":1, "memory_mib":512},"name":"a b"}`, `name="a b" resources={"cpus":1,"memory_mib":512} runtime=python`},
		{`{"reason":"line\nbreak","n":3}`, `n=3 reason="line\nbreak"`},
		{`[1,2]`, "[1,2]"},
		{`{"path":"` + strings.Repeat("é", 100) + `"}`, ""},
	}
	for _, tt := range tests {
		ev := &Event{Data: []byte(tt.data)}
		got := ev.Summary()
		if strings.Contains(got, "\n") || !utf8.ValidString(got) || len(got) > maxSummary {
			t.Fatalf("summary of %s: %q is not one short valid line", tt.data, got)
		}
		if tt.want != "" && got != tt.want {
			t.Fatalf("summary of %s: %q, want %q", tt.data, got, tt.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"A","type":"placed","v":1,"env":"e","host":"h","data":{"host":"h"}}`))
	f.Add([]byte(`{"id":"A","type":"placed","v":2}`))
	f.Add([]byte(`{"id":"A","type":"x","v":1,"time":"2026-01-01T00:00:00Z","data":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw)
		if err != nil {
			return
		}
		if ev.V < 1 || ev.V > SchemaVersion || ev.ID == "" || ev.Type == "" || string(ev.Raw) != string(raw) {
			t.Fatalf("Decode accepted %q as %+v", raw, ev)
		}
		_ = ev.Summary()
		_ = Hash(ev.Raw)
	})
}

func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{EnvSubject("h", "e", EnvExec), HostSubject("h", HostJoined), AuditSubject(AuditDigest),
		"waggle.env.h.e", "waggle..x", "other.env.h.e.t", "waggle.env.h..t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		p, err := ParseSubject(subject)
		if err != nil {
			return
		}
		var rebuilt string
		switch p.Kind {
		case "env":
			rebuilt = EnvSubject(p.Host, p.Env, p.Type)
		case "host":
			rebuilt = HostSubject(p.Host, p.Type)
		case "audit":
			rebuilt = AuditSubject(p.Type)
		default:
			t.Fatalf("kind %q", p.Kind)
		}
		if rebuilt != subject {
			t.Fatalf("ParseSubject(%q) = %+v, rebuilds as %q", subject, p, rebuilt)
		}
		for _, tok := range []string{p.Host, p.Env, p.Type} {
			if tok != "" && ValidID(tok) != nil || p.Type == "" {
				t.Fatalf("ParseSubject(%q) = %+v: invalid token", subject, p)
			}
		}
	})
}

func TestDerivedID(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	id := DerivedID(at, "stuck", "env1", "lost", "7")
	if id != DerivedID(at, "stuck", "env1", "lost", "7") {
		t.Fatal("the same parts give different ids")
	}
	u, err := ulid.ParseStrict(id)
	if err != nil || !ulid.Time(u.Time()).Equal(at) {
		t.Fatalf("%s: not a ULID of %s: %v", id, at, err)
	}
	for _, other := range [][]string{{"stuck", "env1", "lost", "8"}, {"stuck", "env1", "lost7"}, {"stuckenv1", "lost", "7"}} {
		if DerivedID(at, other...) == id {
			t.Errorf("parts %q give the id of another set of parts", other)
		}
	}
	if DerivedID(at.Add(time.Second), "stuck", "env1", "lost", "7") == id {
		t.Error("another time gives the same id")
	}
	if _, err := ulid.ParseStrict(DerivedID(time.Time{}, "x")); err != nil {
		t.Errorf("zero time: %v", err)
	}
}

func TestIsWrongLastSeq(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&jetstream.APIError{ErrorCode: 10071}, true},
		{fmt.Errorf("update: %w", &jetstream.APIError{ErrorCode: 10164}), true}, // a replicated stream or bucket
		{&jetstream.APIError{ErrorCode: 10077}, false},
		{errors.New("wrong last sequence"), false},
		{nil, false},
	} {
		if got := IsWrongLastSeq(tt.err); got != tt.want {
			t.Errorf("IsWrongLastSeq(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
