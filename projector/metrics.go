// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// delayBuckets are the upper bounds (seconds) of the apply delay histogram: from an event
// folded right away to one waiting behind a long rebuild.
var delayBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// metrics are a projector replica's metrics: what it folded, how far behind the stream it is
// in events and in time, and how often it restarted or moved to a rebuilt generation.
type metrics struct {
	applied, refused, rebuilds, restarts prometheus.Counter
	delay                                prometheus.Histogram
	// caughtUp is when the replica was last seen with nothing left to fold (unix nanoseconds).
	caughtUp atomic.Int64
}

func newMetrics(reg prometheus.Registerer, p *Projector) (*metrics, error) {
	m := &metrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_projector_applied_total",
			Help: "Events folded into the view (refused ones included).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_projector_refused_total",
			Help: "Events the fold could not apply (an illegal transition, an unknown environment) and skipped.",
		}),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_projector_rebuilds_total",
			Help: "Moves to a generation a rebuild swapped in.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_projector_restarts_total",
			Help: "Projection sessions ended by an error and started again.",
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "waggle_projector_apply_delay_seconds",
			Help:    "Time from an event being stored to its being folded into the view.",
			Buckets: delayBuckets,
		}),
	}
	m.caughtUp.Store(time.Now().UnixNano())
	collectors := []prometheus.Collector{m.applied, m.refused, m.rebuilds, m.restarts, m.delay,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "waggle_projector_lag_events",
			Help: "Events stored in the stream and not folded into the view yet.",
		}, func() float64 { return float64(p.Lag()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "waggle_projector_lag_seconds",
			Help: "How long the view has been behind the stream: 0 when caught up, else the time since it last was.",
		}, func() float64 { return m.lagSeconds(p.Lag()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "waggle_projector_applied_sequence",
			Help: "Stream sequence of the last event folded into the view.",
		}, func() float64 { return float64(p.Applied()) }),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// folded records one event folded, stored at stored; caughtUp says nothing is left after it.
func (m *metrics) folded(stored time.Time, refused, caughtUp bool) {
	m.applied.Inc()
	if refused {
		m.refused.Inc()
	}
	m.delay.Observe(time.Since(stored).Seconds())
	m.observeLag(caughtUp)
}

// observeLag notes whether the replica is caught up now.
func (m *metrics) observeLag(caughtUp bool) {
	if caughtUp {
		m.caughtUp.Store(time.Now().UnixNano())
	}
}

func (m *metrics) lagSeconds(lag uint64) float64 {
	if lag == 0 {
		return 0
	}
	return time.Since(time.Unix(0, m.caughtUp.Load())).Seconds()
}
