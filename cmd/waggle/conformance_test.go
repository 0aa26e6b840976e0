// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// conformanceCheck is one entry of a scenario's checks.json.
type conformanceCheck struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	ErrorMessage string `json:"errorMessage"`
	Details      any    `json:"details"`
}

// TestMCPConformance runs the official MCP conformance suite (@modelcontextprotocol/conformance,
// `go tool task mcp-conformance`) in server mode against a `waggle up --no-auth` router on
// loopback, as the suite sends no Authorization header.
func TestMCPConformance(t *testing.T) {
	// The server scenarios that apply to waggle, and whether each must pass a check (some only
	// warn about what a stateless server cannot do, which is no failure). The rest of the suite
	// is left out:
	//   - tools-call-*, json-schema-2020-12: they call fixture tools of the suite's reference
	//     server (test_simple_text, json_schema_2020_12_tool, ...); waggle's own tools are
	//     exercised by the mcp-go, TypeScript SDK and Inspector tests;
	//   - tools-call-sampling, tools-call-elicitation, elicitation-*: server-initiated requests,
	//     which a stateless server (any replica serves any call) cannot make;
	//   - logging-set-level: waggle declares no logging capability (its logs are the operators');
	//   - completion-complete, resources-*, prompts-*: waggle offers no prompts or resources.
	scenarios := []struct {
		name     string
		mustPass bool
	}{
		{"server-initialize", true},
		{"ping", true},
		{"tools-list", true},
		{"dns-rebinding-protection", true},
		{"server-sse-multiple-streams", false}, // wants session ids; warns
		{"server-sse-polling", false},          // wants the suite's test_reconnection tool; informs
	}
	node := node22(t)
	suite := npmTool(t, "mcp-conformance", filepath.Join("@modelcontextprotocol", "conformance", "dist", "index.js"), "mcp-conformance")
	up := startUp(t, upSetup{hosts: 0, routers: 1, noAuth: true})
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			out := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, suite, "server", "--url", up.urls[0], "--scenario", sc.name, "-o", out)
			cmd.Env = append(upEnv(), "NO_COLOR=1")
			log, err := cmd.CombinedOutput()
			checks := readConformanceChecks(t, out)
			passed := 0
			for _, c := range checks {
				details, _ := json.Marshal(c.Details)
				switch c.Status {
				case "SUCCESS":
					passed++
				case "FAILURE":
					t.Errorf("check %s failed: %s %s", c.ID, c.ErrorMessage, details)
				case "WARNING":
					t.Logf("check %s warns: %s %s", c.ID, c.ErrorMessage, details)
				}
			}
			if err != nil && !t.Failed() {
				t.Errorf("conformance %s: %v\n%s", sc.name, err, log)
			}
			if sc.mustPass && passed == 0 {
				t.Errorf("conformance %s: no check passed (%d checks)\n%s", sc.name, len(checks), log)
			}
			if t.Failed() {
				t.Logf("suite output:\n%s", log)
			}
		})
	}
}

// readConformanceChecks reads the checks.json the suite wrote for one scenario under dir.
func readConformanceChecks(t *testing.T, dir string) []conformanceCheck {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "checks.json"))
	if len(files) != 1 {
		t.Fatalf("conformance results: %d checks.json files in %s, want 1", len(files), dir)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var checks []conformanceCheck
	if err := json.Unmarshal(data, &checks); err != nil {
		t.Fatalf("%s: %v", files[0], err)
	}
	return checks
}
