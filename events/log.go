// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// MinDuplicateWindow is the shortest deduplication window the stream accepts: a lost-ack retry
// later than this could append the same event twice.
const MinDuplicateWindow = 2 * time.Minute

// StreamSubjects are the subjects the event stream stores. Other waggle subjects (such as the
// host RPC services under waggle.rpc.>) stay outside the stream.
func StreamSubjects() []string {
	return []string{SubjectPrefix + ".env.>", SubjectPrefix + ".host.>", SubjectPrefix + ".audit.>"}
}

// openAttemptTimeout bounds one stream create/update request, so a request lost in a cluster
// still electing its meta leader is retried instead of waiting for the whole context.
const openAttemptTimeout = time.Second

// Log is the event log: the WAGGLE_EVENTS stream and the operations on it. It is safe for
// concurrent use.
type Log struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	locks   keyedMutex
	metrics *logMetrics
}

type logOptions struct {
	replicas   int // 0 = keep an existing stream's, 1 for a new one
	duplicates time.Duration
	metrics    prometheus.Registerer
}

// LogOption tunes OpenLog (and BindLog: WithMetrics).
type LogOption func(*logOptions)

// WithReplicas sets the stream's replica count (1 standalone, 3 in a 3-node cluster). Without
// it, OpenLog creates an R1 stream and keeps an existing stream's count.
func WithReplicas(n int) LogOption { return func(o *logOptions) { o.replicas = n } }

// WithDuplicateWindow sets the stream's deduplication window; at least MinDuplicateWindow.
// Without it, OpenLog uses MinDuplicateWindow for a new stream and keeps an existing stream's
// window if that is long enough.
func WithDuplicateWindow(d time.Duration) LogOption { return func(o *logOptions) { o.duplicates = d } }

// StreamConfig is the configuration OpenLog creates the event stream with.
func StreamConfig(replicas int, duplicates time.Duration) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{Name: StreamName, Replicas: replicas, Duplicates: duplicates}
	applyAuditSettings(&cfg)
	return cfg
}

// applyAuditSettings sets what makes the stream audit-grade: file storage, no message deletion
// or purge, no age or size limit, reads from the stream leader only (no direct get, so a writer
// reading a head before appending sees its own writes).
func applyAuditSettings(cfg *jetstream.StreamConfig) {
	cfg.Description = "waggle event log (audit-grade: no delete, no purge, no age limit)"
	cfg.Subjects = StreamSubjects()
	cfg.Retention = jetstream.LimitsPolicy
	cfg.Storage = jetstream.FileStorage
	cfg.DenyDelete = true
	cfg.DenyPurge = true
	cfg.MaxAge = 0
	cfg.MaxMsgs = -1
	cfg.MaxBytes = -1
	cfg.AllowDirect = false
	if cfg.Duplicates < MinDuplicateWindow {
		cfg.Duplicates = MinDuplicateWindow
	}
}

// OpenLog creates the event stream, or brings an existing one back to the audit settings
// (keeping its replica count and other settings unless told otherwise), and returns the log on
// it. While a fresh cluster has no JetStream meta leader yet (or not enough peers), it retries
// until ctx ends.
func OpenLog(ctx context.Context, nc *nats.Conn, opts ...LogOption) (*Log, error) {
	var o logOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.replicas < 0 {
		return nil, fmt.Errorf("open event log: replicas %d < 1", o.replicas)
	}
	if o.duplicates != 0 && o.duplicates < MinDuplicateWindow {
		return nil, fmt.Errorf("open event log: duplicate window %s < %s", o.duplicates, MinDuplicateWindow)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	metrics, err := newLogMetrics(o.metrics)
	if err != nil {
		return nil, fmt.Errorf("open event log: metrics: %w", err)
	}
	var stream jetstream.Stream
	err = retryTransient(ctx, func(ctx context.Context) error {
		stream, err = ensureStream(ctx, js, o)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open event log: stream %s: %w", StreamName, err)
	}
	return &Log{nc: nc, js: js, stream: stream, metrics: metrics}, nil
}

// RetryTransient runs fn, each attempt bounded by a second, again after a transient error (a
// cluster still electing its leaders, a request lost meanwhile, the same setup racing on
// another node) until ctx ends: for the admin's setup of what goes beside the stream.
func RetryTransient(ctx context.Context, fn func(context.Context) error) error {
	return retryTransient(ctx, fn)
}

// retryTransient runs fn, each attempt bounded by openAttemptTimeout, again after a transient
// error (a cluster still electing its leaders, a request lost meanwhile) until ctx ends.
func retryTransient(ctx context.Context, fn func(context.Context) error) error {
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, openAttemptTimeout)
		err := fn(attemptCtx)
		cancel()
		if err == nil || ctx.Err() != nil || !transientOpenError(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BindLog opens the log on the event stream as it is, for a role that may not create or
// change it: it waits (until ctx ends) for the stream to exist, and refuses one that is not
// audit-grade (the admin's setup makes it so; see OpenLog). Of the options, only WithMetrics
// applies.
func BindLog(ctx context.Context, nc *nats.Conn, opts ...LogOption) (*Log, error) {
	var o logOptions
	for _, opt := range opts {
		opt(&o)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bind event log: %w", err)
	}
	metrics, err := newLogMetrics(o.metrics)
	if err != nil {
		return nil, fmt.Errorf("bind event log: metrics: %w", err)
	}
	// A stream not found yet is waited for: the admin's setup may come after this role starts.
	var stream jetstream.Stream
	err = retryTransient(ctx, func(ctx context.Context) error {
		stream, err = js.Stream(ctx, StreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w (waiting for the admin's setup)", errWaiting)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bind event log: stream %s: %w", StreamName, err)
	}
	if err := checkAuditGrade(stream.CachedInfo().Config); err != nil {
		return nil, fmt.Errorf("bind event log: %w", err)
	}
	return &Log{nc: nc, js: js, stream: stream, metrics: metrics}, nil
}

// errWaiting marks a condition retryTransient waits out.
var errWaiting = errors.New("not there yet")

// checkAuditGrade refuses a stream configuration that could lose history.
func checkAuditGrade(cfg jetstream.StreamConfig) error {
	want := cfg
	applyAuditSettings(&want)
	if cfg.DenyDelete != want.DenyDelete || cfg.DenyPurge != want.DenyPurge || cfg.MaxAge != want.MaxAge ||
		cfg.MaxMsgs != want.MaxMsgs || cfg.MaxBytes != want.MaxBytes || cfg.Storage != want.Storage ||
		cfg.Retention != want.Retention || cfg.Duplicates < MinDuplicateWindow || cfg.AllowDirect {
		return fmt.Errorf("stream %s is not audit-grade (deny delete %v, deny purge %v, max age %s, max msgs %d, max bytes %d, duplicates %s): let the admin set it up again (waggle setup)",
			StreamName, cfg.DenyDelete, cfg.DenyPurge, cfg.MaxAge, cfg.MaxMsgs, cfg.MaxBytes, cfg.Duplicates)
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, o logOptions) (jetstream.Stream, error) {
	stream, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return js.CreateStream(ctx, StreamConfig(max(o.replicas, 1), o.duplicates))
	}
	if err != nil {
		return nil, err
	}
	have := stream.CachedInfo().Config
	want := have
	want.Subjects = nil // fresh slice: have's must stay as the server sent it
	applyAuditSettings(&want)
	if o.replicas > 0 {
		want.Replicas = o.replicas
	}
	if o.duplicates > 0 {
		want.Duplicates = o.duplicates
	}
	if reflect.DeepEqual(have, want) {
		return stream, nil
	}
	return js.UpdateStream(ctx, want)
}

// Error codes a JetStream cluster answers while it is still forming.
const (
	errCodeClusterNoPeers  = 10005 // no suitable peers for placement
	errCodeClusterNotAvail = 10008 // JetStream system temporarily unavailable
	errCodeClusterNoLeader = 10009 // not the leader
)

func transientOpenError(err error) bool {
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, errWaiting) { // created concurrently: update it
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeClusterNoPeers, errCodeClusterNotAvail, errCodeClusterNoLeader:
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// JetStream is the JetStream context the log uses.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Stream is the event stream.
func (l *Log) Stream() jetstream.Stream { return l.stream }

// LastSeq is the sequence of the last stored event (0 when the log is empty).
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("event log: stream info: %w", err)
	}
	return info.State.LastSeq, nil
}
