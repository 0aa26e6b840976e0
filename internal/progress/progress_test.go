// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package progress

import (
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// times matches the elapsed times of a line, which vary from run to run.
var times = regexp.MustCompile(`\d+(\.\d)?s|\d+m\d\ds`)

func normalize(s string) string { return times.ReplaceAllString(s, "T") }

func TestStage(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		what    string
		summary string
		err     error
		want    string
	}{
		{"summary", "fetch the kernel", "6.12 (90 MiB)", nil, "   T [vm] kernel: fetch the kernel\n   T [vm] kernel: 6.12 (90 MiB) (T)\n"},
		{"no summary, no what", "", "", nil, "   T [vm] kernel: done (T)\n"},
		{"failure", "", "", boom, "   T [vm] kernel: FAILED after T\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			r := newReporter(&out, false)
			err := r.Stage("vm", "kernel", tt.what, func() (string, error) { return tt.summary, tt.err })
			if !errors.Is(err, tt.err) {
				t.Errorf("Stage returned %v, want %v", err, tt.err)
			}
			if got := normalize(out.String()); got != tt.want {
				t.Errorf("output %q, want %q", got, tt.want)
			}
		})
	}
}

func TestElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0.0s", 1234 * time.Millisecond: "1.2s", 59*time.Second + 940*time.Millisecond: "59.9s",
		61 * time.Second: "1m01s", 10*time.Minute + 30*time.Second: "10m30s",
	} {
		if got := Elapsed(d); got != want {
			t.Errorf("Elapsed(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestBarLines(t *testing.T) {
	var out strings.Builder
	r := newReporter(&out, false)
	b := r.Bar("bench", "tti", 4)
	b.Add(1) // within LineInterval of the first line: not printed
	r.Printf("bench", "a note")
	b.Add(3)
	b.Add(1) // past the total: ignored
	b.Done("")
	b.Done("again") // a second Done prints nothing
	want := "   T [bench] tti [------------------------] 0/4 0% T\n" +
		"   T [bench] a note\n" +
		"   T [bench] tti [########################] 4/4 100% T\n" +
		"   T [bench] tti: 4/4 (T)\n"
	if got := normalize(out.String()); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestBarLive(t *testing.T) {
	var out strings.Builder
	r := newReporter(&out, true)
	b := r.Bar("images", "build", 2)
	b.Add(1)
	r.Printf("python", "ready")
	b.Done("2 built")
	got := normalize(out.String())
	want := "\r\x1b[K   T [images] build [------------------------] 0/2 0% T" +
		"\r\x1b[K   T [images] build [############------------] 1/2 50% T" +
		"\r\x1b[K   T [python] ready\n   T [images] build [############------------] 1/2 50% T" +
		"\r\x1b[K   T [images] build: 2 built (T)\n"
	if got != want {
		t.Errorf("output:\n%q\nwant:\n%q", got, want)
	}
}

func TestConcurrentLinesDoNotInterleave(t *testing.T) {
	var out strings.Builder
	r := New(&out)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				r.Printf("worker", "line of worker %d", i)
			}
		})
	}
	wg.Wait()
	line := regexp.MustCompile(`^ *\d+\.\ds \[worker\] line of worker \d$`)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Fatalf("mangled line %q", l)
		}
	}
}

func TestNilWriterDiscards(t *testing.T) {
	r := New(nil)
	r.Printf("x", "nothing")
	r.Bar("x", "y", 0).Done("")
}

func TestNilReporter(t *testing.T) {
	var r *Reporter
	r.Printf("x", "nothing")
	ran := false
	if err := r.Stage("x", "y", "z", func() (string, error) { ran = true; return "", nil }); err != nil || !ran {
		t.Errorf("Stage on a nil Reporter: ran %v, err %v", ran, err)
	}
	b := r.Bar("x", "y", 3)
	b.Add(1)
	b.Done("")
}
