// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"strings"
	"testing"
)

func TestInstallCommand(t *testing.T) {
	tests := []struct {
		runtime  string
		packages []string
		wantErr  string
		wantTail []string
	}{
		{"python", []string{"requests", "numpy==2.1.0", "uvicorn[standard]>=0.30,<1"}, "", []string{"requests", "numpy==2.1.0", "uvicorn[standard]>=0.30,<1"}},
		{"python", []string{"pkg[a,b]"}, "", []string{"pkg[a,b]"}},
		{"node", []string{"@types/node", "lodash@^4.17.21", "left-pad"}, "", []string{"@types/node", "lodash@^4.17.21", "left-pad"}},
		{"python", []string{"--index-url=http://evil"}, "invalid python package name", nil},
		{"python", []string{"requests; rm -rf /"}, "invalid", nil},
		{"python", []string{"a b"}, "invalid", nil},
		{"node", []string{"-g"}, "invalid node package name", nil},
		{"node", []string{"$(id)"}, "invalid", nil},
		{"node", []string{"@scope/../x"}, "invalid", nil},
		{"shell", []string{"curl"}, "apt needs root", nil},
		{"python", nil, "packages is required", nil},
		{"ruby", []string{"rails"}, "does not know runtime", nil},
	}
	for _, tt := range tests {
		t.Run(tt.runtime+"/"+strings.Join(tt.packages, ","), func(t *testing.T) {
			argv, err := installCommand(tt.runtime, tt.packages)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			tail := argv[len(argv)-len(tt.wantTail):]
			if strings.Join(tail, "\x00") != strings.Join(tt.wantTail, "\x00") {
				t.Fatalf("argv = %q", argv)
			}
		})
	}
}

// FuzzInstallCommand checks that no accepted package argument can be read as an option or
// carries whitespace, quotes or shell metacharacters.
func FuzzInstallCommand(f *testing.F) {
	for _, s := range []string{"requests", "numpy==2.1", "@types/node", "x[y]", "-e", "a;b", "lodash@^4"} {
		f.Add("python", s)
		f.Add("node", s)
	}
	f.Fuzz(func(t *testing.T, runtime, pkg string) {
		argv, err := installCommand(runtime, []string{pkg})
		if err != nil {
			return
		}
		if strings.HasPrefix(pkg, "-") || strings.ContainsAny(pkg, " \t\n\r'\"`$;&|\\(){}\x00") {
			t.Fatalf("accepted %q for %s: %q", pkg, runtime, argv)
		}
		if argv[len(argv)-1] != pkg {
			t.Fatalf("package not last argument: %q", argv)
		}
	})
}
