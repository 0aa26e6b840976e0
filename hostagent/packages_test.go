// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events/hostrpc"
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

func TestInstallMessages(t *testing.T) {
	long := strings.Repeat("line of output\n", 1000) + "ERROR: the end"
	tests := []struct {
		name     string
		out      hostrpc.ExecResult
		failures []string
		want     []string
		not      []string
	}{
		{"stderr", hostrpc.ExecResult{Stdout: "Collecting x", Stderr: "ERROR: No matching distribution found for x\n"}, nil,
			[]string{":\nERROR: No matching distribution found for x"}, []string{"Collecting", "proxy"}},
		{"stdout when stderr is empty", hostrpc.ExecResult{Stdout: "E: Unable to locate package x"}, nil,
			[]string{"Unable to locate package x"}, nil},
		{"long output keeps its end", hostrpc.ExecResult{Stderr: long}, nil, []string{":\n...\n", "ERROR: the end"}, nil},
		{"upstream failures", hostrpc.ExecResult{Stderr: "ERROR: x"},
			[]string{"u1: connection refused", "u2: 503", "u3", "u4", "u5"},
			[]string{"package proxy could not fetch from its upstream:\n  u1: connection refused\n  u2: 503\n  u3\n  (and 2 more)"}, []string{"u4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := managerMessage(tt.out) + proxyFailures(tt.failures)
			if len(msg) > maxManagerMessage+1000 {
				t.Errorf("message of %d bytes", len(msg))
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(msg, n) {
					t.Errorf("%q has %q", msg, n)
				}
			}
		})
	}
}
