// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	msList := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []time.Duration
		want benchStats
	}{
		{"none", nil, benchStats{}},
		{"one", msList(7), benchStats{P50MS: 7, P99MS: 7, MeanMS: 7, MinMS: 7, MaxMS: 7}},
		{"two", msList(30, 10), benchStats{P50MS: 10, P99MS: 30, MeanMS: 20, MinMS: 10, MaxMS: 30}},
		{"hundred", msList(hundred...), benchStats{P50MS: 50, P99MS: 99, MeanMS: 50.5, MinMS: 1, MaxMS: 100}},
		{"sub-millisecond", []time.Duration{1234 * time.Microsecond}, benchStats{P50MS: 1.23, P99MS: 1.23, MeanMS: 1.23, MinMS: 1.23, MaxMS: 1.23}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := append([]time.Duration(nil), tt.in...)
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize = %+v, want %+v", got, tt.want)
			}
			for i := range before {
				if before[i] != tt.in[i] {
					t.Fatal("summarize reordered its input")
				}
			}
		})
	}
}

func TestBenchReportPrint(t *testing.T) {
	added := 3.5
	rep := benchReport{URL: "http://x/mcp", Runtime: "shell",
		Create:        benchStats{Calls: 2, P50MS: 2500, P99MS: 3000},
		Execute:       benchStats{Calls: 5, Errors: 1, P50MS: 40, P99MS: 90, FirstError: "execute: boom"},
		Direct:        &benchStats{Calls: 5, P50MS: 36.5},
		RouterAddedMS: &added}
	var out bytes.Buffer
	if err := rep.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"runtime shell", "create_environment", "2500.0", "first execute error: execute: boom",
		"direct host exec", "router's added latency on execute (median of MCP minus direct host RPC, pairwise): 3.5 ms"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown runtime", []string{"--runtime", "cobol"}, `--runtime "cobol"`},
		{"no creates", []string{"--creates", "0"}, "--creates"},
		{"no parallelism", []string{"--parallel", "0"}, "--parallel"},
		{"negative memory", []string{"--memory-mib", "-1"}, "--memory-mib"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := waggle(t, append([]string{"bench", "--url", "http://127.0.0.1:1/mcp"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("waggle bench %v: %v (output %q), want an error naming %s", tt.args, err, out, tt.want)
			}
		})
	}
}

func TestMeasured(t *testing.T) {
	ms := time.Millisecond
	m := measured{
		took: [][]time.Duration{
			{100 * ms, 0, 300 * ms, 50 * ms, 1000 * ms},
			{90 * ms, 80 * ms, 0, 45 * ms, 990 * ms},
		},
		errs: [][]error{{errors.New("first")}, {errors.New("second")}},
	}
	if got := m.pairedP50(0, 1); got != 10 { // pairs 0, 3, 4: differences 10, 5, 10
		t.Errorf("pairedP50 = %v, want 10", got)
	}
	st := m.stats(1)
	if st.Calls != 5 || st.Errors != 1 || st.FirstError != "second" || st.MinMS != 45 || st.MaxMS != 990 {
		t.Errorf("stats(1) = %+v", st)
	}
	if got := (measured{took: [][]time.Duration{{0}, {ms}}}).pairedP50(0, 1); got != 0 {
		t.Errorf("pairedP50 without pairs = %v, want 0", got)
	}
}
