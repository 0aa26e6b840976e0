// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"strings"
	"testing"
)

// TestInstallCommand checks the package manager each runtime runs; the package specs are
// checked before (hostrpc.Limits.CheckInstall, tested there).
func TestInstallCommand(t *testing.T) {
	for _, tt := range []struct {
		runtime string
		want    string
		wantErr string
	}{
		{"python", PipPath + " install --no-input --disable-pip-version-check a b==1", ""},
		{"node", "npm install -g --prefix " + NpmPrefix + " --no-fund --no-audit a b==1", ""},
		{"shell", "", "no package manager"},
		{"ruby", "", "no package manager"},
	} {
		argv, err := installCommand(tt.runtime, []string{"a", "b==1"})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.runtime, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(argv, " ") != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.runtime, argv, err, tt.want)
		}
	}
}
