// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"regexp"
	"strings"
)

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnvironment reads an /etc/environment file: KEY=VALUE lines, the value optionally in
// double or single quotes; comments, blank lines and malformed lines are skipped.
func parseEnvironment(data []byte) []string {
	var env []string
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || !envKeyRE.MatchString(k) {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if strings.ContainsRune(v, 0) {
			continue
		}
		env = append(env, k+"="+v)
	}
	return env
}

// applyEnvironment merges an image's environment into the SSH server's: PATH replaces path,
// other variables are added after base (so they win over its defaults).
func applyEnvironment(path string, base, image []string) (string, []string) {
	env := append([]string(nil), base...)
	for _, kv := range image {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			if v != "" {
				path = v
			}
			continue
		}
		env = append(env, kv)
	}
	return path, env
}
