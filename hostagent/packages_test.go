// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// TestInstallCommand checks the package manager each runtime runs, all from the package
// proxy; the package specs are checked before (hostrpc.Limits.CheckInstall, tested there), and
// the guest's privileged apt request checks its names again.
func TestInstallCommand(t *testing.T) {
	for _, tt := range []struct {
		runtime string
		pkgs    []string
		want    string
		wantErr string
	}{
		{"python", []string{"a", "b==1"}, PipPath + " install --no-input --disable-pip-version-check --index-url " + wire.PipIndexURL +
			" --trusted-host " + wire.PackageProxyHost + " a b==1", ""},
		{"node", []string{"a", "b@1"}, "npm install -g --prefix " + NpmPrefix + " --no-fund --no-audit --no-update-notifier --registry " +
			wire.NpmRegistryURL + " a b@1", ""},
		{"shell", []string{"curl", "g++", "hello=2.10-3"}, wire.AptInstallCommand + " curl g++ hello=2.10-3", ""},
		{"shell", []string{"-o=APT::Get::AllowUnauthenticated=1"}, "", "invalid Debian package name"},
		{"ruby", []string{"rails"}, "", "no package manager"},
	} {
		argv, err := installCommand(tt.runtime, tt.pkgs)
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
