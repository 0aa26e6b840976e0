// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"slices"
	"strings"
	"testing"
)

func TestParseEnvironment(t *testing.T) {
	data := "# comment\nPATH=\"/opt/venv/bin:/usr/bin\"\nVIRTUAL_ENV='/opt/venv'\nexport A=b\n\nbad line\n1X=y\nEMPTY=\n"
	got := parseEnvironment([]byte(data))
	want := []string{"PATH=/opt/venv/bin:/usr/bin", "VIRTUAL_ENV=/opt/venv", "A=b", "EMPTY="}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	path, env := applyEnvironment("/bin", []string{"LANG=C.UTF-8"}, got)
	if path != "/opt/venv/bin:/usr/bin" {
		t.Fatalf("path %q", path)
	}
	if !slices.Equal(env, []string{"LANG=C.UTF-8", "VIRTUAL_ENV=/opt/venv", "A=b", "EMPTY="}) {
		t.Fatalf("env %q", env)
	}
}

func FuzzParseEnvironment(f *testing.F) {
	f.Add([]byte("PATH=\"/usr/bin\"\nA='b'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kv := range parseEnvironment(data) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !envKeyRE.MatchString(k) || strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("bad entry %q", kv)
			}
		}
	})
}
