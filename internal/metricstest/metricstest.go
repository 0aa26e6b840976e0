// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package metricstest reads single series out of a Prometheus registry in tests, and lints the
// registry's exposition as Prometheus's own checker does.
package metricstest

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Value is the value of one series of g, written as in the exposition format with its labels
// sorted: `name{a="1",b="2"}`, or the bare name when it has no labels. A histogram's series
// is its `_count`. The test fails when g has no such series.
func Value(t testing.TB, g prometheus.Gatherer, series string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var v float64
			switch {
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				name += "_count"
				v = float64(m.GetHistogram().GetSampleCount())
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			s := name
			if len(labels) > 0 {
				s += "{" + strings.Join(labels, ",") + "}"
			}
			if s == series {
				return v
			}
			names = append(names, s)
		}
	}
	t.Fatalf("no series %s; the registry has:\n%s", series, strings.Join(names, "\n"))
	return 0
}

// Expect fails the test for each series of want whose value in g differs.
func Expect(t testing.TB, g prometheus.Gatherer, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		if got := Value(t, g, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
}

// Lint fails the test when the exposition of g has problems Prometheus's linter reports
// (missing HELP, counters without _total, non-base units, ...).
func Lint(t testing.TB, g prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}
