// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events/access"
)

const systemdDir = "../../deploy/systemd"

// unitFile is a parsed systemd unit: each key's values in order, by "Section.Key".
type unitFile struct {
	name string
	keys map[string][]string
}

func (u unitFile) get(key string) []string { return u.keys[key] }

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{name: filepath.Base(path), keys: map[string][]string{}}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is no key=value", u.name, line)
			}
			u.keys[section+"."+k] = append(u.keys[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// readEnvExample reads deploy/systemd/NAME.example, the example of /etc/waggle/NAME.
func readEnvExample(t *testing.T, envFile string) map[string]string {
	t.Helper()
	path := filepath.Join(systemdDir, filepath.Base(envFile)+".example")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the units read %s, but deploy/systemd has no example of it: %v", envFile, err)
	}
	env := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is no NAME=value", path, line)
		}
		env[k] = v
	}
	return env
}

var (
	credRef = regexp.MustCompile(`%d/([^\s]+)`)
	envRef  = regexp.MustCompile(`\$\{([A-Z_]+)\}`)
)

// TestSystemdUnits checks every unit in deploy/systemd: its ExecStart against the real flags of
// the binary with the settings of the environment files it reads (their examples beside it),
// each credential it uses (%d/NAME) loaded with LoadCredential=, the hardening each promises,
// and `waggle nats` able to run from exactly the credentials its unit loads.
func TestSystemdUnits(t *testing.T) {
	units, err := filepath.Glob(filepath.Join(systemdDir, "*.service"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in %s: %v", systemdDir, err)
	}
	roles := map[string]bool{}
	for _, path := range units {
		u := parseUnit(t, path)
		t.Run(u.name, func(t *testing.T) {
			env := map[string]string{}
			for _, f := range u.get("Service.EnvironmentFile") {
				for k, v := range readEnvExample(t, strings.TrimPrefix(f, "-")) {
					env[k] = v
				}
			}
			exec := u.get("Service.ExecStart")
			if len(exec) != 1 {
				t.Fatalf("ExecStart %v: want one", exec)
			}
			loaded := map[string]string{}
			for _, lc := range u.get("Service.LoadCredential") {
				id, src, _ := strings.Cut(lc, ":")
				loaded[id] = src
			}
			for _, m := range credRef.FindAllStringSubmatch(exec[0], -1) {
				if _, ok := loaded[m[1]]; !ok {
					t.Errorf("ExecStart uses the credential %s, which no LoadCredential= loads", m[1])
				}
			}
			line := envRef.ReplaceAllStringFunc(exec[0], func(ref string) string {
				name := envRef.FindStringSubmatch(ref)[1]
				v, ok := env[name]
				if !ok {
					t.Errorf("ExecStart uses ${%s}, which its environment files do not set", name)
				}
				return v
			})
			line = strings.NewReplacer("%d", "/run/credentials/"+u.name, "%S", "/var/lib", "%i", "p1").Replace(line)
			args := strings.Fields(line)
			if args[0] != "/usr/local/bin/waggle" {
				t.Fatalf("ExecStart runs %s, not /usr/local/bin/waggle", args[0])
			}
			if err := checkInvocation(args[1:], env); err != nil {
				t.Error(err)
			}
			roles[args[1]] = true

			want := map[string]string{"Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict",
				"Service.ProtectHome": "yes", "Service.PrivateTmp": "yes", "Service.RestrictSUIDSGID": "yes"}
			if args[1] == "hostagent" {
				want["Service.User"] = "root"
				want["Service.KillMode"] = "process"
				want["Service.DevicePolicy"] = "closed"
				want["Service.DeviceAllow"] = "/dev/kvm rw"
				want["Service.CapabilityBoundingSet"] = "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_SETUID CAP_SETGID"
			} else {
				want["Service.DynamicUser"] = "yes"
				want["Service.CapabilityBoundingSet"] = ""
				want["Service.PrivateDevices"] = "yes"
			}
			for k, v := range want {
				if got := u.get(k); !slices.Contains(got, v) {
					t.Errorf("%s=%v, want %q", k, got, v)
				}
			}
			if args[1] == "nats" {
				checkNATSCredentials(t, loaded)
			}
		})
	}
	for _, r := range []string{"nats", "router", "projector", "hostagent"} {
		if !roles[r] {
			t.Errorf("deploy/systemd has no unit for waggle %s", r)
		}
	}
}

// checkNATSCredentials: a credentials directory holding exactly the files waggle-nats.service
// loads (named as the files of `waggle creds init`) is all `waggle nats` of a cluster node needs:
// it opens the trust and finds every credential it uses without writing one (the unit's
// credentials directory is read-only).
func checkNATSCredentials(t *testing.T, loaded map[string]string) {
	t.Helper()
	full := filepath.Join(t.TempDir(), "creds")
	if out, err := waggle(t, "creds", "init", "--dir", full); err != nil {
		t.Fatalf("creds init: %v: %s", err, out)
	}
	dir := t.TempDir()
	for id, src := range loaded {
		if filepath.Dir(src) != "/etc/waggle/creds" || filepath.Base(src) != id {
			t.Errorf("LoadCredential=%s:%s: want /etc/waggle/creds/%s, the file of the credentials directory", id, src, id)
		}
		raw, err := os.ReadFile(filepath.Join(full, id))
		if err != nil {
			t.Fatalf("LoadCredential=%s: `waggle creds init` makes no such file: %v", id, err)
		}
		writeFile(t, filepath.Join(dir, id), string(raw))
	}
	trust, err := openTrust(t.Context(), io.Discard, dir, false,
		adminRole, operatorRole, routerRole, access.Role{Kind: access.Projector, ID: access.DefaultProjector})
	if err != nil {
		t.Fatalf("waggle nats cannot open the credentials its unit loads: %v", err)
	}
	if _, err := trustOptions(trust, adminRole); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(loaded) {
		t.Errorf("waggle nats wrote into its credentials directory (it has %d files, the unit loads %d): load the missing ones", len(after), len(loaded))
	}
}

// exposureLimits are the highest `systemd-analyze security` exposure each unit may have (0 is
// the most locked down, 10 the least): the host agent runs as root with six capabilities and
// QEMU, the others as dynamic users with none.
var exposureLimits = map[string]float64{
	"waggle-router.service":       2.0,
	"waggle-projector@p1.service": 2.0,
	"waggle-nats.service":         2.0,
	"waggle-hostagent.service":    5.0,
}

var exposureLine = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

// TestSystemdAnalyze runs `systemd-analyze verify` on every unit (any complaint fails: an
// unknown key, a value it cannot parse, a binary that is not there) and `systemd-analyze
// security --offline`, whose exposure must stay under the unit's limit.
func TestSystemdAnalyze(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check deploy/systemd (Debian package systemd; `go tool task deps` installs it): %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob(filepath.Join(systemdDir, "*.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		raw, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that the binary exists: this test's own stands in for it.
		name := strings.Replace(filepath.Base(u), "@.", "@p1.", 1)
		path := filepath.Join(dir, name)
		writeFile(t, path, strings.ReplaceAll(string(raw), "/usr/local/bin/waggle", self))
		paths = append(paths, path)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.Len()+stderr.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	for _, path := range paths {
		out, _ := exec.Command(analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
		m := exposureLine.FindStringSubmatch(string(out))
		if m == nil {
			t.Errorf("systemd-analyze security %s: no exposure level in:\n%s", filepath.Base(path), out)
			continue
		}
		level, _ := strconv.ParseFloat(m[2], 64)
		limit, ok := exposureLimits[m[1]]
		if !ok {
			t.Errorf("%s has no exposure limit in the test", m[1])
		}
		t.Logf("%s: exposure %.1f (limit %.1f)", m[1], level, limit)
		if level > limit {
			t.Errorf("%s: exposure %.1f is above %.1f:\n%s", m[1], level, limit, out)
		}
	}
}
