// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// checkInvocation parses a command line of this binary as written in a deployment file (args
// without the binary's name) against the real command tree, and sets every WAGGLE_<FLAG>
// variable of env on that command as bindEnv would, so a flag that does not exist, a value its
// type refuses, a missing required flag and a variable that names no flag of the command are
// errors.
func checkInvocation(args []string, env map[string]string) error {
	root := newRootCmd()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if cmd == root || !cmd.Runnable() {
		return fmt.Errorf("%q names no command of waggle", strings.Join(args, " "))
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	var errs []error
	for name, val := range env {
		flag, ok := strings.CutPrefix(name, "WAGGLE_")
		if !ok {
			continue
		}
		flag = strings.ToLower(strings.ReplaceAll(flag, "_", "-"))
		f := cmd.Flags().Lookup(flag)
		switch {
		case f == nil:
			errs = append(errs, fmt.Errorf("%s: %s sets --%s, which %s does not have", cmd.CommandPath(), name, flag, cmd.CommandPath()))
		case !f.Changed:
			if err := cmd.Flags().Set(flag, val); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s=%q: %w", cmd.CommandPath(), name, val, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return cmd.ValidateRequiredFlags()
}

// TestCheckInvocation: the checker itself refuses what it must, so the deployment tests that
// rely on it prove something.
func TestCheckInvocation(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"router with real flags", []string{"router", "--listen", "0.0.0.0:8080", "--nats-creds", "/c/router.creds"}, nil, ""},
		{"subcommand", []string{"vm", "prepare", "--cgroups", "off"}, nil, ""},
		{"env sets a flag", []string{"hostagent"}, map[string]string{"WAGGLE_HOST_ID": "h1", "WAGGLE_MAX_ENVIRONMENTS": "3"}, ""},
		{"unknown flag", []string{"router", "--listne", "x"}, nil, "unknown flag: --listne"},
		{"bad value", []string{"hostagent", "--host-id", "h1", "--capacity-cpus", "many"}, nil, "invalid argument"},
		{"required flag missing", []string{"hostagent"}, nil, `"host-id" not set`},
		{"env names no flag", []string{"router"}, map[string]string{"WAGGLE_HOST_ID": "h1"}, "does not have"},
		{"env bad value", []string{"router"}, map[string]string{"WAGGLE_MAX_ENV_CPUS": "x"}, "WAGGLE_MAX_ENV_CPUS"},
		{"no such command", []string{"routre"}, nil, "unknown command"},
		{"no command", nil, nil, "names no command"},
		{"stray argument", []string{"router", "extra"}, nil, "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkInvocation(c.args, c.env)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestComposeCommands checks every service of deploy/compose/docker-compose.yml against the
// real flags of the binary, and that each credential a service uses is one `waggle creds init`
// makes into the shared creds volume.
func TestComposeCommands(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command     []string          `json:"command"`
			Environment map[string]string `json:"environment"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "creds")
	if out, err := waggle(t, "creds", "init", "--dir", creds); err != nil {
		t.Fatalf("creds init: %v: %s", err, out)
	}
	for name, svc := range compose.Services {
		if len(svc.Command) == 0 {
			t.Errorf("service %s runs no waggle command", name)
			continue
		}
		if err := checkInvocation(svc.Command, svc.Environment); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		for i, a := range svc.Command {
			if a == "--nats-creds" && i+1 < len(svc.Command) {
				if _, err := os.Stat(filepath.Join(creds, strings.TrimPrefix(svc.Command[i+1], "/creds/"))); err != nil {
					t.Errorf("service %s uses %s, which `waggle creds init` does not make: %v", name, svc.Command[i+1], err)
				}
			}
		}
	}
}

// TestDeployREADMECommands checks every waggle command in the shell blocks of deploy/README.md
// against the real flags of the binary, so the steps an operator copies work as written.
func TestDeployREADMECommands(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	inBlock := false
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "```"):
			inBlock = !inBlock
			continue
		case !inBlock:
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		for _, seg := range strings.FieldsFunc(line, func(r rune) bool { return r == '|' || r == ';' || r == '&' }) {
			fields := strings.Fields(seg)
			if len(fields) == 0 || fields[0] != "waggle" {
				continue
			}
			var args []string
			for _, f := range fields[1:] {
				if strings.HasPrefix(f, ">") {
					break
				}
				args = append(args, strings.Trim(f, `"'`))
			}
			n++
			if err := checkInvocation(args, nil); err != nil {
				t.Errorf("deploy/README.md: %q: %v", strings.TrimSpace(seg), err)
			}
		}
	}
	if n == 0 {
		t.Fatal("deploy/README.md shows no waggle command")
	}
	t.Logf("%d waggle commands checked", n)
}
