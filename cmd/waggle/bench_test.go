// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
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
		{"one", msList(7), benchStats{P50MS: 7, P90MS: 7, P99MS: 7, MeanMS: 7, MinMS: 7, MaxMS: 7}},
		{"two", msList(30, 10), benchStats{P50MS: 10, P90MS: 30, P99MS: 30, MeanMS: 20, MinMS: 10, MaxMS: 30}},
		{"hundred", msList(hundred...), benchStats{P50MS: 50, P90MS: 90, P99MS: 99, MeanMS: 50.5, MinMS: 1, MaxMS: 100}},
		{"sub-millisecond", []time.Duration{1234 * time.Microsecond}, benchStats{P50MS: 1.23, P90MS: 1.23, P99MS: 1.23, MeanMS: 1.23, MinMS: 1.23, MaxMS: 1.23}},
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

func TestQuantiles(t *testing.T) {
	tests := []struct {
		in             []uint64
		p50, p99, most uint64
	}{
		{nil, 0, 0, 0},
		{[]uint64{5}, 5, 5, 5},
		{[]uint64{9, 1, 3, 7}, 3, 9, 9},
	}
	for _, tt := range tests {
		if p50, p99, most := quantiles(tt.in); p50 != tt.p50 || p99 != tt.p99 || most != tt.most {
			t.Errorf("quantiles(%v) = %d, %d, %d; want %d, %d, %d", tt.in, p50, p99, most, tt.p50, tt.p99, tt.most)
		}
	}
}

// TestShares: each hop's share is the difference of the nested times the hops report, as
// medians; calls without timing are left out.
func TestShares(t *testing.T) {
	total := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 120 * time.Millisecond, 50 * time.Millisecond}
	timing := []*hostrpc.Timing{
		{RPCMS: 90, HostMS: 80, GuestMS: 60},
		{RPCMS: 180, HostMS: 170, GuestMS: 150},
		{RPCMS: 110, HostMS: 100, GuestMS: 70},
		nil,
	}
	got := shares(total, timing)
	want := execShares{TotalMS: 120, RouterMS: 10, NATSMS: 10, HostMS: 20, GuestMS: 70}
	if got != want {
		t.Errorf("shares = %+v, want %+v", got, want)
	}
	if s := got.String(); !strings.Contains(s, "router 10.0 ms (8%)") || !strings.Contains(s, "guest 70.0 ms (58%)") {
		t.Errorf("shares text %q", s)
	}
	if (execShares{}).String() != "" {
		t.Error("no timing must print nothing")
	}
}

func TestParseSmapsRollup(t *testing.T) {
	good := "55d1c8a4b000-7ffd1e7fe000 ---p 00000000 00:00 0                          [rollup]\n" +
		"Rss:              287424 kB\nPss:              281000 kB\nPss_Anon:         270000 kB\nShared_Clean:       5000 kB\n"
	tests := []struct {
		name     string
		in       string
		rss, pss int64
		wantErr  bool
	}{
		{"rollup", good, 287424, 281000, false},
		{"empty", "", 0, 0, true},
		{"no pss", "Rss: 10 kB\n", 0, 0, true},
		{"bad number", "Rss: x kB\nPss: 1 kB\n", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss, pss, err := parseSmapsRollup(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr || rss != tt.rss || pss != tt.pss {
				t.Errorf("parseSmapsRollup = %d, %d, %v", rss, pss, err)
			}
		})
	}
}

// FuzzParseSmapsRollup: no input makes the parser panic, and what it accepts has both values.
func FuzzParseSmapsRollup(f *testing.F) {
	f.Add("Rss: 1 kB\nPss: 2 kB\n")
	f.Add("Rss:\nPss: kB kB\n")
	f.Fuzz(func(t *testing.T, in string) {
		if _, _, err := parseSmapsRollup(strings.NewReader(in)); err == nil && !strings.Contains(in, "Pss:") {
			t.Errorf("accepted %q without a Pss line", in)
		}
	})
}

func TestBenchReportPrint(t *testing.T) {
	added := 3.5
	rep := benchReport{URL: "http://x/mcp", Machine: benchMachine{Accel: "tcg", Cores: 2, MemoryMiB: 24000, WaggleVersion: "dev", GoVersion: "go1.26", Where: "waggle up on this machine"},
		TTI:  []benchCase{{Name: "cold (no warm pool)", benchStats: benchStats{Calls: 5, P50MS: 4100, P90MS: 4300, P99MS: 4400, PerSecond: 0.2}, Note: "boot p50 3900 ms"}},
		Exec: []execCase{{Name: "shell echo", benchStats: benchStats{Calls: 20, P50MS: 40}, Breakdown: execShares{TotalMS: 40, RouterMS: 2, NATSMS: 1, HostMS: 7, GuestMS: 30}}},
		Burst: []burstCase{{Concurrent: 16, Started: 8, Failed: 8, CompletionS: 21.5,
			Create: benchStats{Calls: 16, Errors: 8, P50MS: 9000, FirstError: "create_environment: no capacity"}}},
		Events:  &eventsReport{Writers: 8, PerSecond: 20000, Append: benchStats{Calls: 100000, P50MS: 0.3}, LagEventsP99: 40, CatchUpMS: 12},
		Density: &densityReport{Held: 8, MemoryMiB: 512, Refusal: "no capacity", QEMU: &vmMemory{Processes: 8}, RSSPerEnvMiB: 281, PSSPerEnvMiB: 270},
		Calls:   &callsReport{Runtime: "shell", Create: benchStats{Calls: 2}, Direct: &benchStats{Calls: 5, P50MS: 36.5}, RouterAddedMS: &added},
		Skipped: map[string]string{"events": "needs NATS"},
	}
	var out bytes.Buffer
	if err := rep.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tcg acceleration, 2 cores", "cold (no warm pool)", "4100.0", "boot p50 3900 ms",
		"router 2.0 ms (5%), NATS 1.0 ms (2%), host agent 7.0 ms (18%), guest 30.0 ms (75%)",
		"16 concurrent creates", "all answered in 21.5 s: 8 started, 8 failed", "first burst 16 concurrent creates error: create_environment: no capacity",
		"20000 appends/s", "QEMU RSS 281 MiB, PSS 270 MiB per environment", "then refused: no capacity",
		"router adds 3.5 ms", "events skipped: needs NATS"} {
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
		{"unknown scenario", []string{"warp"}, `unknown scenario "warp"`},
		{"unknown runtime", []string{"--runtime", "cobol"}, `--runtime "cobol"`},
		{"no creates", []string{"--creates", "0"}, "--creates"},
		{"no parallelism", []string{"--parallel", "0"}, "--parallel"},
		{"negative memory", []string{"--memory-mib", "-1"}, "--memory-mib"},
		{"no tti", []string{"--tti-n", "0"}, "--tti-n"},
		{"huge burst", []string{"--bursts", "16,1000"}, "--bursts 1000"},
		{"no density", []string{"--density-max", "0"}, "--density-max"},
		{"nats with up", []string{"--up", "--nats-url", "nats://x"}, "--nats-url and --nats-creds are for --url"},
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
		wall: 2 * time.Second,
	}
	if got := m.pairedP50(0, 1); got != 10 { // pairs 0, 3, 4: differences 10, 5, 10
		t.Errorf("pairedP50 = %v, want 10", got)
	}
	st := m.stats(1)
	if st.Calls != 5 || st.Errors != 1 || st.FirstError != "second" || st.MinMS != 45 || st.MaxMS != 990 || st.PerSecond != 2 {
		t.Errorf("stats(1) = %+v", st)
	}
	if got := (measured{took: [][]time.Duration{{0}, {ms}}}).pairedP50(0, 1); got != 0 {
		t.Errorf("pairedP50 without pairs = %v, want 0", got)
	}
}

// TestBenchUp runs `waggle bench --up --json` with small counts: it starts its own waggle up,
// runs every scenario through MCP, reports each with the machine it ran on, and leaves no
// VM behind.
func TestBenchUp(t *testing.T) {
	vmtest.Require(t)
	vmtest.Kernel(t)
	vmtest.Image(t, "shell")
	vmtest.Image(t, "python")
	before := len(qemuPIDs("wbench"))
	benchDirs := func() map[string]bool {
		dirs := map[string]bool{}
		entries, _ := os.ReadDir(os.TempDir())
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "wbench") {
				dirs[e.Name()] = true
			}
		}
		return dirs
	}
	dirsBefore := benchDirs()
	stdout, stderr, code := runWaggleFor(t, 10*time.Minute, "bench", "--up", "--json", "--cache-dir", vmtest.CacheDir(t),
		"--tti-n", "2", "--warm-pool", "1", "--exec-n", "3", "--bursts", "2", "--events-for", "1s", "--event-writers", "2", "--density-max", "2")
	if code != 0 {
		t.Fatalf("waggle bench --up: exit code %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	for _, stage := range []string{"[bench] up:", "[tti] cold (no warm pool): 2/2", "[bench] tti warm up:", "[exec] shell echo", "[bench] density:"} {
		if !strings.Contains(stderr, stage) {
			t.Errorf("progress lacks %q:\n%s", stage, stderr)
		}
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("waggle bench --json: %v\n%s", err, stdout)
	}
	t.Logf("waggle bench --up:\n%s", stdout)
	if rep.Machine.Accel != "tcg" && rep.Machine.Accel != "kvm" || rep.Machine.Cores < 1 || rep.Machine.MemoryMiB < 1 || rep.Machine.QEMUVersion == "" {
		t.Errorf("machine %+v", rep.Machine)
	}
	if len(rep.TTI) != 2 || rep.TTI[0].Calls != 2 || rep.TTI[0].Errors != 0 || rep.TTI[1].Name != "warm pool" || rep.TTI[1].Errors != 0 {
		t.Errorf("tti %+v", rep.TTI)
	}
	if len(rep.Exec) != 2 || rep.Exec[0].Errors+rep.Exec[1].Errors != 0 || rep.Exec[0].Breakdown.GuestMS <= 0 || rep.Exec[1].Breakdown.TotalMS <= 0 {
		t.Errorf("exec %+v", rep.Exec)
	}
	if len(rep.Burst) != 1 || rep.Burst[0].Started != 2 {
		t.Errorf("burst %+v", rep.Burst)
	}
	if e := rep.Events; e == nil || e.Appended == 0 || e.PerSecond <= 0 || e.Append.Errors != 0 {
		t.Errorf("events %+v", e)
	}
	if d := rep.Density; d == nil || d.Held != 2 || d.QEMU == nil || d.QEMU.Processes != 2 || d.PSSPerEnvMiB <= 0 || d.RSSPerEnvMiB < d.PSSPerEnvMiB {
		t.Errorf("density %+v", d)
	}
	if left := len(qemuPIDs("wbench")); left > before {
		t.Errorf("%d QEMU processes of the bench left behind", left-before)
	}
	for dir := range benchDirs() {
		if !dirsBefore[dir] {
			t.Errorf("the bench left its data directory %s", dir)
		}
	}
}
