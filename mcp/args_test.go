// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package mcp

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/waggle-dev/waggle/router"
)

func TestDecodeCreate(t *testing.T) {
	for _, tc := range []struct {
		args string
		want createArgs
		err  string
	}{
		{`{"runtime":"python"}`, createArgs{Runtime: "python"}, ""},
		{`{"runtime":"node","name":"n","timeout_minutes":5,"cpus":2,"memory_mib":1024}`,
			createArgs{Runtime: "node", Name: "n", TimeoutMinutes: 5, CPUs: 2, MemoryMiB: 1024}, ""},
		{`{"runtime":"shell","timeout_minutes":"7"}`, createArgs{Runtime: "shell", TimeoutMinutes: 7}, ""},
		{`{"runtime":"shell","idempotency_key":"job-42"}`, createArgs{Runtime: "shell", IdempotencyKey: "job-42"}, ""},
		{`{"runtime":"shell","idempotency_key":["x"]}`, createArgs{}, "idempotency_key must be a string, not an array"},
		{`{}`, createArgs{}, "runtime is required"},
		{`{"runtime":"ruby"}`, createArgs{}, `runtime "ruby" is not allowed: use one of python, node, shell`},
		{`{"runtime":3}`, createArgs{}, "runtime must be a string, not a number"},
		{`{"runtime":"python","timeout_minutes":1.5}`, createArgs{}, "timeout_minutes must be a whole number"},
		{`{"runtime":"python","timeout_minutes":1e300}`, createArgs{}, "out of range"},
		{`{"runtime":"python","memory":512}`, createArgs{}, `unknown argument "memory"`},
		{`[1]`, createArgs{}, "arguments must be a JSON object"},
	} {
		var raw any
		if err := json.Unmarshal([]byte(tc.args), &raw); err != nil {
			t.Fatal(err)
		}
		got, err := decodeCreate(raw, router.Runtimes())
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

func TestDecodeOthers(t *testing.T) {
	for _, tc := range []struct {
		name string
		dec  func(any) error
		args string
		err  string
	}{
		{"exec ok", func(a any) error { _, err := decodeExec(toolExecute, a, router.Runtimes()); return err }, `{"environment_id":"e","code":"print(1)","language":"python","timeout_seconds":10}`, ""},
		{"exec no code", func(a any) error { _, err := decodeExec(toolExecute, a, router.Runtimes()); return err }, `{"environment_id":"e"}`, "code is required"},
		{"exec bad lang", func(a any) error { _, err := decodeExec(toolExecute, a, router.Runtimes()); return err }, `{"environment_id":"e","code":"x","language":"go"}`, `language "go" is not allowed`},
		{"exec no env", func(a any) error { _, err := decodeExec(toolExecute, a, router.Runtimes()); return err }, `{"code":"x"}`, "environment_id is required"},
		{"start_process names itself", func(a any) error { _, err := decodeExec(toolStart, a, router.Runtimes()); return err }, `{"environment_id":"e","code":"x","x":1}`, `start_process: unknown argument "x"`},
		{"process ok", func(a any) error { _, err := decodeProcess(toolWaitProc, a, true); return err }, `{"environment_id":"e","process_id":"p-1","timeout_seconds":5}`, ""},
		{"process no id", func(a any) error { _, err := decodeProcess(toolReadProc, a, false); return err }, `{"environment_id":"e"}`, "process_id is required"},
		{"read_process takes no timeout", func(a any) error { _, err := decodeProcess(toolReadProc, a, false); return err }, `{"environment_id":"e","process_id":"p","timeout_seconds":1}`, `unknown argument "timeout_seconds"`},
		{"install string", func(a any) error { _, err := decodeInstall(a); return err }, `{"environment_id":"e","packages":"a b"}`, ""},
		{"install array", func(a any) error { _, err := decodeInstall(a); return err }, `{"environment_id":"e","packages":["a","b"]}`, ""},
		{"install empty", func(a any) error { _, err := decodeInstall(a); return err }, `{"environment_id":"e","packages":"  "}`, "packages is required"},
		{"write base64", func(a any) error { _, err := decodeWrite(a); return err }, `{"environment_id":"e","path":"/a","content":"aGk=","encoding":"base64"}`, ""},
		{"write bad enc", func(a any) error { _, err := decodeWrite(a); return err }, `{"environment_id":"e","path":"/a","content":"x","encoding":"latin1"}`, "encoding"},
		{"read no path", func(a any) error { _, err := decodeRead(a); return err }, `{"environment_id":"e"}`, "path is required"},
		{"list recursive", func(a any) error { _, err := decodeListFiles(a); return err }, `{"environment_id":"e","recursive":true}`, ""},
		{"list bad recursive", func(a any) error { _, err := decodeListFiles(a); return err }, `{"environment_id":"e","recursive":"maybe"}`, "recursive must be true or false"},
		{"none extra", func(a any) error { return decodeNone(toolList, a) }, `{"x":1}`, "takes no arguments"},
		{"none null", func(a any) error { return decodeNone(toolList, a) }, `null`, ""},
	} {
		var raw any
		if err := json.Unmarshal([]byte(tc.args), &raw); err != nil {
			t.Fatal(err)
		}
		err := tc.dec(raw)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
	// The router fills defaults and checks the limits: a decoder passes what it got.
	f, err := decodeListFiles(map[string]any{"environment_id": "e"})
	if err != nil || f.Path != "" {
		t.Fatalf("list_files without a path: %+v %v", f, err)
	}
	i, err := decodeInstall(map[string]any{"environment_id": "e", "packages": []any{"a b", "c"}})
	if err != nil || strings.Join(i.Packages, ",") != "a,b,c" {
		t.Fatalf("install packages: %+v %v", i, err)
	}
}

// FuzzDecoders feeds arbitrary JSON to every tool-argument decoder: none may panic, and what a
// decoder accepts must respect the types and bounds it promises.
func FuzzDecoders(f *testing.F) {
	for _, s := range []string{
		`{"runtime":"python","timeout_minutes":30}`, `{"environment_id":"x","code":"1","timeout_seconds":"5"}`,
		`{"environment_id":"x","packages":["a",1]}`, `{"environment_id":"x","path":"/","recursive":"true"}`,
		`{"runtime":"node","cpus":-1e10}`, `null`, `[]`, `"s"`, `{"environment_id":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var raw any
		if json.Unmarshal(data, &raw) != nil {
			return
		}
		if c, err := decodeCreate(raw, router.Runtimes()); err == nil {
			if c.Runtime == "" || abs(c.TimeoutMinutes) > maxArgInt || abs(c.CPUs) > maxArgInt || abs(c.MemoryMiB) > maxArgInt {
				t.Fatalf("create accepted %+v", c)
			}
		}
		if e, err := decodeExec(toolExecute, raw, router.Runtimes()); err == nil && (e.Env == "" || e.Code == "") {
			t.Fatalf("exec accepted %+v", e)
		}
		if i, err := decodeInstall(raw); err == nil && (i.Env == "" || len(i.Packages) == 0 || slices.ContainsFunc(i.Packages, func(p string) bool {
			return p == "" || strings.ContainsFunc(p, unicode.IsSpace)
		})) {
			t.Fatalf("install accepted %+v", i)
		}
		if w, err := decodeWrite(raw); err == nil && (w.Env == "" || w.Path == "") {
			t.Fatalf("write accepted %+v", w)
		}
		if r, err := decodeRead(raw); err == nil && (r.Env == "" || r.Path == "") {
			t.Fatalf("read accepted %+v", r)
		}
		if l, err := decodeListFiles(raw); err == nil && l.Env == "" {
			t.Fatalf("list_files accepted %+v", l)
		}
		for _, wait := range []bool{false, true} {
			if pa, err := decodeProcess(toolWaitProc, raw, wait); err == nil && (pa.Env == "" || pa.Process == "" || (!wait && pa.TimeoutSeconds != 0)) {
				t.Fatalf("process (wait %v) accepted %+v", wait, pa)
			}
		}
		if id, err := decodeEnvID(toolGet, raw); err == nil && id == "" {
			t.Fatal("get accepted an empty id")
		}
		_ = decodeNone(toolList, raw)
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
