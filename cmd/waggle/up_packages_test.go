// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy/pkgtest"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// installOut is the result of install_packages.
type installOut struct {
	execOut
	Fetched []events.PackageFile `json:"fetched"`
}

// TestUpPackages runs install_packages end to end: a `waggle up` whose package proxy fetches
// from local test upstreams (a PEP 503 index with a wheel, an npm registry with a tarball, a
// signed Debian repository with a .deb, all built by the test: this machine reaches no public
// index) installs the package in python, node and shell environments through MCP, and the
// code then imports, requires or runs it. The same install in a second environment comes from
// the host's cache; an unknown package is a tool error with the package manager's message;
// so is a version that does not exist, or an upstream that is down; every install leaves an
// exec event with the packages asked for and the files fetched.
func TestUpPackages(t *testing.T) {
	vmtest.Require(t)
	vmtest.Kernel(t)
	for _, img := range []string{"python", "node", "shell"} {
		vmtest.Image(t, img)
	}
	up := pkgtest.Start(t, pkgtest.Options{Sign: true, Require: os.Getenv(vmtest.RequireEnv) == "1"})
	keyring := filepath.Join(t.TempDir(), "repo.asc")
	if err := os.WriteFile(keyring, up.AptKeys, 0o644); err != nil {
		t.Fatal(err)
	}
	w := startUp(t, upSetup{hosts: 1, routers: 1, extra: []string{
		"--capacity-memory", "4096", "--capacity-cpus", "8", "--max-environments", "8",
		"--pypi-index", up.PyPI, "--npm-registry", up.Npm, "--apt-mirror", up.Apt, "--apt-keyring", keyring,
		"--package-cache-size", "64MiB",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := dialT(ctx, t, w.urls[0], w.key, newCallLog())

	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	tests := []struct {
		runtime, file, sha256 string
		upstream              string // the file's path on the upstream
		code                  string // uses what was installed
		unknown               string // what the package manager says of an unknown package
		version, noVersion    string // a version that does not exist, and what the package manager says of it
	}{
		{"python", pkgtest.WheelFile, sum(up.Wheel), pkgtest.WheelPath,
			"import waggle_hello; print(waggle_hello.greet())", "No matching distribution found for no-such-package-zz",
			pkgtest.Name + "==9.9", "No matching distribution found for waggle-hello==9.9"},
		{"node", pkgtest.TarballFile, sum(up.Tarball), pkgtest.TarballPath,
			`console.log(require("waggle-hello").greet())`, "404 Not Found",
			pkgtest.Name + "@9.9.9", "No matching version found for waggle-hello@9.9.9"},
		{"shell", pkgtest.DebFile, sum(up.Deb), pkgtest.DebPath,
			"waggle-hello", "Unable to locate package no-such-package-zz",
			pkgtest.Name + "=9.9", "Version '9.9' for 'waggle-hello' was not found"},
	}
	for _, tt := range tests {
		t.Run(tt.runtime, func(t *testing.T) {
			var fromUpstream, fromCache time.Duration
			for i, wantCached := range []bool{false, true} {
				var env envOut
				s.ok("create_environment", map[string]any{"runtime": tt.runtime, "timeout_minutes": 10}, &env)
				id := map[string]any{"environment_id": env.ID}
				t.Cleanup(func() { _ = s.s.Call(context.WithoutCancel(ctx), "destroy_environment", id, nil) })

				start := time.Now()
				var res installOut
				s.ok("install_packages", map[string]any{"environment_id": env.ID, "packages": pkgtest.Name}, &res)
				took := time.Since(start)
				if i == 0 {
					fromUpstream = took
				} else {
					fromCache = took
				}
				f := slices.IndexFunc(res.Fetched, func(f events.PackageFile) bool { return f.File == tt.file })
				if res.ExitCode != 0 || f < 0 || res.Fetched[f].SHA256 != tt.sha256 || res.Fetched[f].Cached != wantCached ||
					res.Fetched[f].Name != pkgtest.Name || res.Fetched[f].Version != pkgtest.Version {
					t.Fatalf("install in environment %d: %+v, want %s (sha256 %s) fetched with cached=%v", i+1, res, tt.file, tt.sha256, wantCached)
				}
				var out execOut
				s.ok("execute", map[string]any{"environment_id": env.ID, "code": tt.code}, &out)
				if out.ExitCode != 0 || strings.TrimSpace(out.Stdout) != pkgtest.Greeting {
					t.Fatalf("using the package: %+v", out)
				}
				if i == 0 {
					msg := s.toolError("install_packages", map[string]any{"environment_id": env.ID, "packages": "no-such-package-zz"})
					if !strings.Contains(msg, "install failed (exit status") || !strings.Contains(msg, tt.unknown) {
						t.Errorf("unknown package: %q, want the package manager's %q", msg, tt.unknown)
					}
					t.Logf("install_packages no-such-package-zz in %s: tool error %q", tt.runtime, msg)
					msg = s.toolError("install_packages", map[string]any{"environment_id": env.ID, "packages": tt.version})
					if !strings.Contains(msg, "install failed (exit status") || !strings.Contains(msg, tt.noVersion) {
						t.Errorf("version that does not exist: %q, want the package manager's %q", msg, tt.noVersion)
					}
					checkInstallEvent(ctx, t, w, env.ID, tt.file, tt.sha256)
				}
				s.ok("destroy_environment", id, nil)
			}
			t.Logf("install_packages %s in %s: %s from the upstream, %s from the host's cache",
				pkgtest.Name, tt.runtime, fromUpstream.Round(time.Millisecond), fromCache.Round(time.Millisecond))
			if n := up.Hits(tt.upstream); n != 1 {
				t.Errorf("the upstream served %s %d times, want once (then the cache)", tt.upstream, n)
			}
		})
	}
	t.Run("upstream down", func(t *testing.T) {
		var env envOut
		s.ok("create_environment", map[string]any{"runtime": "python", "timeout_minutes": 10}, &env)
		id := map[string]any{"environment_id": env.ID}
		defer s.ok("destroy_environment", id, nil)
		up.Close()
		msg := s.toolError("install_packages", map[string]any{"environment_id": env.ID, "packages": "other-package"})
		if !strings.Contains(msg, "pip install failed (exit status") || !strings.Contains(msg, "No matching distribution found for other-package") ||
			!strings.Contains(msg, "package proxy could not fetch from its upstream") || !strings.Contains(msg, "connection refused") {
			t.Errorf("upstream down: %q, want pip's message and the proxy's upstream failure", msg)
		}
		t.Logf("install_packages with the upstream down: tool error %q", msg)
	})
}

// checkInstallEvent finds env's audit event of its install: the packages asked for and the
// file fetched.
func checkInstallEvent(ctx context.Context, t *testing.T, w *upProc, env, file, sha string) {
	t.Helper()
	evs, _, err := w.openLog(ctx, t).Load(ctx, events.EnvAggregate("host1", env))
	if err != nil {
		t.Fatal(err)
	}
	var installs []events.Exec
	for _, ev := range evs {
		var ex events.Exec
		if ev.Type == events.EnvExec && ev.DecodeData(&ex) == nil && strings.HasPrefix(ex.Language, "install:") {
			installs = append(installs, ex)
		}
	}
	if len(installs) != 3 {
		t.Fatalf("%d install events, want 3 (one ok, two failed)", len(installs))
	}
	ok, failed := installs[0], installs[1]
	if !slices.Equal(ok.Packages, []string{pkgtest.Name}) || ok.ExitCode != 0 ||
		!slices.ContainsFunc(ok.Fetched, func(f events.PackageFile) bool { return f.File == file && f.SHA256 == sha && !f.Cached }) {
		t.Errorf("install event %+v lacks %s (sha256 %s) fetched from the upstream", ok, file, sha)
	}
	if !slices.Equal(failed.Packages, []string{"no-such-package-zz"}) || failed.ExitCode == 0 {
		t.Errorf("failed install event %+v", failed)
	}
}
