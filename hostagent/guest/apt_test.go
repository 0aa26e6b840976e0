// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// fakeAptGet is an apt-get that logs its arguments, one call per line, and fails "install"
// of a package named "missing" as apt does.
const fakeAptGet = `#!/bin/sh
echo "$*" >>"$(dirname "$0")/calls"
for a; do [ "$a" = missing ] && { echo "E: Unable to locate package missing" >&2; exit 100; }; done
exit 0
`

func TestAptInstall(t *testing.T) {
	dir := t.TempDir()
	aptGet := filepath.Join(dir, "apt-get")
	if err := os.WriteFile(aptGet, []byte(fakeAptGet), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := AptConfig{AptGet: aptGet, KeysDir: filepath.Join(dir, "trusted.gpg.d")}
	armored := []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----\n")
	tests := []struct {
		name      string
		keys      []byte
		names     []string
		code      int
		calls     []string // substrings of each apt-get call
		keyFile   string   // the key file left, if any
		stderrHas string
	}{
		{"armored key", armored, []string{"curl", "g++"}, 0,
			[]string{"--error-on=any update", "--no-install-recommends install -- curl g++"}, "waggle-packages.asc", ""},
		{"binary key", []byte{0x98, 0x33, 0x04}, []string{"jq"}, 0,
			[]string{"update", "install -- jq"}, "waggle-packages.gpg", ""},
		{"no key", nil, []string{"jq=1.6-2.1"}, 0, []string{"update", "install -- jq=1.6-2.1"}, "", ""},
		{"apt fails", nil, []string{"missing"}, 100, []string{"update", "install -- missing"}, "", "Unable to locate package missing"},
		{"option", nil, []string{"-oAPT::Get::AllowUnauthenticated=1"}, 2, nil, "", "invalid Debian package name"},
		{"path", nil, []string{"/tmp/x.deb"}, 2, nil, "", "invalid Debian package name"},
		{"none", nil, nil, 2, nil, "", "give 1 to"},
		{"keys too large", bytes.Repeat([]byte("k"), wire.MaxAptKeys+1), []string{"jq"}, 2, nil, "", "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "calls"))
			var stdout, stderr bytes.Buffer
			code := AptInstall(cfg, bytes.NewReader(tt.keys), &stdout, &stderr, tt.names)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderrHas) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.stderrHas)
			}
			raw, _ := os.ReadFile(filepath.Join(dir, "calls"))
			calls := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if len(tt.calls) == 0 {
				if len(raw) != 0 {
					t.Fatalf("apt-get ran: %q", raw)
				}
				return
			}
			if len(calls) != len(tt.calls) {
				t.Fatalf("apt-get calls %q, want %q", calls, tt.calls)
			}
			for i, want := range tt.calls {
				if !strings.Contains(calls[i], want) {
					t.Errorf("call %d %q lacks %q", i, calls[i], want)
				}
			}
			keys, _ := filepath.Glob(filepath.Join(cfg.KeysDir, "waggle-packages.*"))
			switch {
			case tt.keyFile == "" && len(keys) != 0:
				t.Errorf("keys left: %q", keys)
			case tt.keyFile != "" && (len(keys) != 1 || filepath.Base(keys[0]) != tt.keyFile):
				t.Errorf("keys %q, want %s", keys, tt.keyFile)
			}
		})
	}
}
