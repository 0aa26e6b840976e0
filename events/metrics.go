// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"errors"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// appendBuckets are the upper bounds (seconds) of the append latency histogram: a local ack
// takes well under a millisecond, a replicated one a few.
var appendBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// Results of an append (label result of waggle_events_appends_total).
const (
	appendOK       = "ok"
	appendConflict = "conflict"
	appendError    = "error"
)

// logMetrics are the event log's metrics: appends by result and their latency, and the
// retries after a lost ack that found their event already stored.
type logMetrics struct {
	appends *prometheus.CounterVec
	latency prometheus.Histogram
	lostAck prometheus.Counter
}

// WithMetrics registers the log's metrics (waggle_events_*) with reg. Without it they are kept
// but not exported.
func WithMetrics(reg prometheus.Registerer) LogOption { return func(o *logOptions) { o.metrics = reg } }

func newLogMetrics(reg prometheus.Registerer) (*logMetrics, error) {
	m := &logMetrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "waggle_events_appends_total",
			Help: "Appends to the event log by result: ok (stored, or found stored by a retry), conflict (another writer moved the aggregate first) or error.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "waggle_events_append_duration_seconds",
			Help:    "Latency of one append, from the call to the server's answer (waiting for the aggregate's previous append included).",
			Buckets: appendBuckets,
		}),
		lostAck: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "waggle_events_lost_ack_retries_total",
			Help: "Appends that found their event already stored: a retry after an acknowledgement was lost.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.appends, m.latency, m.lostAck} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{appendOK, appendConflict, appendError} {
		m.appends.WithLabelValues(r)
	}
	return m, nil
}

// appended records one append that started at start and ended with *errp.
func (m *logMetrics) appended(start time.Time, errp *error) {
	m.latency.Observe(time.Since(start).Seconds())
	switch err := *errp; {
	case err == nil:
		m.appends.WithLabelValues(appendOK).Inc()
	case errors.Is(err, ErrConflict):
		m.appends.WithLabelValues(appendConflict).Inc()
	default:
		m.appends.WithLabelValues(appendError).Inc()
	}
}

// serverCollector reads an embedded server's state on each scrape (waggle_nats_*): client
// connections, traffic, slow consumers, JetStream storage, and each stream's and consumer's
// depth, so the broker is watched like the roles that use it.
type serverCollector struct {
	s *Server

	connections, routes, slowConsumers, inMsgs, outMsgs, inBytes, outBytes *prometheus.Desc
	storage, memory, metaLeader, metaClusterSize                           *prometheus.Desc
	streamMsgs, streamBytes, streamLastSeq, streamConsumers                *prometheus.Desc
	consumerPending, consumerAckPending, consumerRedelivered               *prometheus.Desc
}

// RegisterServerMetrics registers the server's metrics (waggle_nats_*) with reg; they are read
// from the server on each scrape.
func RegisterServerMetrics(reg prometheus.Registerer, s *Server) error {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("waggle_nats_"+name, help, labels, nil)
	}
	return reg.Register(&serverCollector{
		s:                   s,
		connections:         d("connections", "Client connections open now."),
		routes:              d("routes", "Route connections to other cluster nodes."),
		slowConsumers:       d("slow_consumers_total", "Clients disconnected for being too slow to read their messages."),
		inMsgs:              d("in_messages_total", "Messages received (clients, routes and leaf nodes)."),
		outMsgs:             d("out_messages_total", "Messages sent (clients, routes and leaf nodes)."),
		inBytes:             d("in_bytes_total", "Bytes of messages received."),
		outBytes:            d("out_bytes_total", "Bytes of messages sent."),
		storage:             d("jetstream_storage_bytes", "File storage JetStream uses on this node."),
		memory:              d("jetstream_memory_bytes", "Memory storage JetStream uses on this node."),
		metaLeader:          d("jetstream_meta_leader", "1 if this node is the JetStream meta leader (a standalone node always is)."),
		metaClusterSize:     d("jetstream_meta_cluster_size", "JetStream nodes this node knows of (1 standalone)."),
		streamMsgs:          d("stream_messages", "Messages stored in a stream.", "stream"),
		streamBytes:         d("stream_bytes", "Bytes stored in a stream.", "stream"),
		streamLastSeq:       d("stream_last_sequence", "Sequence of a stream's last message.", "stream"),
		streamConsumers:     d("stream_consumers", "Consumers of a stream.", "stream"),
		consumerPending:     d("consumer_pending_messages", "Messages of the stream a consumer has not been delivered yet.", "stream", "consumer"),
		consumerAckPending:  d("consumer_ack_pending_messages", "Messages delivered to a consumer and not acknowledged yet.", "stream", "consumer"),
		consumerRedelivered: d("consumer_redelivered_messages", "Messages a consumer has had delivered more than once and not acknowledged yet.", "stream", "consumer"),
	})
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.routes, c.slowConsumers, c.inMsgs, c.outMsgs, c.inBytes, c.outBytes,
		c.storage, c.memory, c.metaLeader, c.metaClusterSize, c.streamMsgs, c.streamBytes, c.streamLastSeq,
		c.streamConsumers, c.consumerPending, c.consumerAckPending, c.consumerRedelivered} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	ns := c.s.ns
	if v, err := ns.Varz(nil); err == nil {
		gauge(c.connections, float64(v.Connections))
		gauge(c.routes, float64(v.Routes))
		counter(c.slowConsumers, float64(v.SlowConsumers))
		counter(c.inMsgs, float64(v.InMsgs))
		counter(c.outMsgs, float64(v.OutMsgs))
		counter(c.inBytes, float64(v.InBytes))
		counter(c.outBytes, float64(v.OutBytes))
	}
	js, err := ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil || js.Disabled {
		return
	}
	gauge(c.storage, float64(js.Store))
	gauge(c.memory, float64(js.Memory))
	leader, size := 0.0, 1.0
	if ns.JetStreamIsLeader() {
		leader = 1
	}
	if js.Meta != nil && js.Meta.Size > 0 {
		size = float64(js.Meta.Size)
	}
	gauge(c.metaLeader, leader)
	gauge(c.metaClusterSize, size)
	for _, acc := range js.AccountDetails {
		for _, st := range acc.Streams {
			gauge(c.streamMsgs, float64(st.State.Msgs), st.Name)
			gauge(c.streamBytes, float64(st.State.Bytes), st.Name)
			gauge(c.streamLastSeq, float64(st.State.LastSeq), st.Name)
			gauge(c.streamConsumers, float64(st.State.Consumers), st.Name)
			for _, ci := range st.Consumer {
				gauge(c.consumerPending, float64(ci.NumPending), st.Name, ci.Name)
				gauge(c.consumerAckPending, float64(ci.NumAckPending), st.Name, ci.Name)
				gauge(c.consumerRedelivered, float64(ci.NumRedelivered), st.Name, ci.Name)
			}
		}
	}
}
