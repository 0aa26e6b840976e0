// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"strings"
	"testing"
)

func TestCheckAptPackages(t *testing.T) {
	tests := []struct {
		names []string
		ok    bool
	}{
		{[]string{"curl"}, true},
		{[]string{"g++", "libstdc++6", "python3.11-venv", "lib32z1"}, true},
		{[]string{"hello=2.10-3", "tzdata=2024a-0+deb12u1", "systemd=252.22-1~deb12u1", "x11-common=1:7.7+23"}, true},
		{[]string{"libc6:amd64"}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"c"}, false}, // too short
		{[]string{"-y"}, false},
		{[]string{"--allow-unauthenticated"}, false},
		{[]string{"-o=APT::Get::AllowUnauthenticated=true"}, false},
		{[]string{"Curl"}, false},
		{[]string{"curl wget"}, false},
		{[]string{"curl;id"}, false},
		{[]string{"curl$(id)"}, false},
		{[]string{"./local.deb"}, false},
		{[]string{"/tmp/x.deb"}, false},
		{[]string{"curl="}, false},
		{[]string{"curl=-1"}, false},
		{[]string{"curl/bookworm"}, false},
		{[]string{"curl\n"}, false},
		{[]string{strings.Repeat("a", 129)}, false},
		{make([]string, MaxAptPackages+1), false},
	}
	for _, tt := range tests {
		err := CheckAptPackages(tt.names)
		if (err == nil) != tt.ok {
			t.Errorf("CheckAptPackages(%q) = %v, want ok %v", tt.names, err, tt.ok)
		}
	}
}

// FuzzCheckAptPackages checks that no accepted name can be read as an option or a path, or
// carries whitespace or shell characters.
func FuzzCheckAptPackages(f *testing.F) {
	for _, s := range []string{"curl", "g++", "hello=2.10-3", "-y", "a b", "x:amd64", "../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckAptPackages([]string{name}) != nil {
			return
		}
		if strings.HasPrefix(name, "-") || strings.ContainsAny(name, " \t\n\r'\"`$;&|\\(){}/*?<>\x00") {
			t.Fatalf("accepted %q", name)
		}
	})
}
