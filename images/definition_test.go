// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"regexp"
	"strings"
	"testing"
)

func TestDefinitions(t *testing.T) {
	defs := Definitions()
	if len(defs) == 0 || defs[0].Name != "base" {
		t.Fatalf("Definitions() must start with base, got %v", Names())
	}
	hexRE := regexp.MustCompile(`^[0-9a-f]{16}$`)
	seenName, seenHash := map[string]bool{}, map[string]bool{}
	for _, d := range defs {
		t.Run(d.Name, func(t *testing.T) {
			if err := checkName(d.Name); err != nil {
				t.Fatal(err)
			}
			if seenName[d.Name] {
				t.Fatalf("duplicate name %s", d.Name)
			}
			seenName[d.Name] = true
			if d.Description == "" {
				t.Error("no description")
			}
			if _, err := envFiles(d.Env); err != nil {
				t.Error(err)
			}
			if !strings.HasPrefix(strings.Join(d.Env, "\n"), "PATH=") {
				t.Errorf("Env must set PATH first, got %q", d.Env)
			}
			for _, s := range d.Steps {
				if s.Name == "" || s.Script == "" {
					t.Errorf("step %+v needs a name and a script", s)
				}
			}
			h := d.Hash()
			if !hexRE.MatchString(h) {
				t.Errorf("hash %q is not 16 hex digits", h)
			}
			if h != d.Hash() {
				t.Error("hash is not stable")
			}
			if seenHash[h] {
				t.Errorf("hash %s shared with another image", h)
			}
			seenHash[h] = true
			got, ok := Lookup(d.Name)
			if !ok || got.Hash() != h {
				t.Errorf("Lookup(%q) = %v, %v", d.Name, got.Name, ok)
			}
		})
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup found an unknown name")
	}
}

func TestHashCoversContent(t *testing.T) {
	base, _ := Lookup("python")
	tests := []struct {
		name   string
		change func(*Definition)
	}{
		{"name", func(d *Definition) { d.Name = "python2" }},
		{"package added", func(d *Definition) { d.Packages = append(d.Packages, "git") }},
		{"package order", func(d *Definition) { d.Packages[0], d.Packages[1] = d.Packages[1], d.Packages[0] }},
		{"step script", func(d *Definition) { d.Steps[0].Script += "\ntrue" }},
		{"env", func(d *Definition) { d.Env = append(d.Env, "X=1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := Lookup("python")
			tt.change(&d)
			if d.Hash() == base.Hash() {
				t.Errorf("hash did not change when %s changed", tt.name)
			}
		})
	}
}

func TestSelectDefinitions(t *testing.T) {
	tests := []struct {
		names   []string
		want    string
		wantErr bool
	}{
		{nil, "base python node shell", false},
		{[]string{"node", "python", "node"}, "node python", false},
		{[]string{"ruby"}, "", true},
	}
	for _, tt := range tests {
		defs, err := selectDefinitions(tt.names)
		if (err != nil) != tt.wantErr {
			t.Fatalf("selectDefinitions(%v) error %v", tt.names, err)
		}
		var got []string
		for _, d := range defs {
			got = append(got, d.Name)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("selectDefinitions(%v) = %v, want %s", tt.names, got, tt.want)
		}
	}
}
