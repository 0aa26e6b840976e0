// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/projector/audit"
)

// Config configures one projector replica.
type Config struct {
	// Name identifies the replica and names its durable consumer (see Consumer). Replicas that
	// run at the same time need distinct names; a restarted replica keeps its name.
	Name string
	// Consumer is the name of this replica's durable consumer (default: access.ProjectorConsumer(Name);
	// with credentials, the secret name in them, see events/access.Durable).
	Consumer string
	// DigestEvery is the most events one audit digest covers; a digest is appended once this
	// many events are uncovered. 0 or less: this replica appends no digests.
	DigestEvery int
	// DigestInterval appends a digest over what is uncovered after this long even when fewer
	// than DigestEvery events came.
	DigestInterval time.Duration
	// MetaInterval is how often the applied sequence is written while catching up; it is
	// written after every event once caught up.
	MetaInterval time.Duration
	// Tick is how often an idle projector looks at the stream's length and the digest timer.
	Tick time.Duration
	// RetryDelay is the pause before the projector starts again after an error.
	RetryDelay time.Duration
	// Logger receives progress and errors; nil uses slog.Default().
	Logger *slog.Logger
	// Metrics receives the replica's metrics (waggle_projector_*, labelled replica=Name); nil
	// keeps them unexported.
	Metrics prometheus.Registerer
}

// DefaultConfig is one replica named "default" that appends a digest every 1000 events or
// every minute.
func DefaultConfig() Config {
	return Config{
		Name:           "default",
		DigestEvery:    1000,
		DigestInterval: time.Minute,
		MetaInterval:   100 * time.Millisecond,
		Tick:           250 * time.Millisecond,
		RetryDelay:     time.Second,
	}
}

// Projector keeps the view in KV up to date with the event log.
type Projector struct {
	cfg     Config
	log     *events.Log
	lg      *slog.Logger
	metrics *metrics

	applied    atomic.Uint64 // last sequence this replica folded in
	streamLast atomic.Uint64 // the stream's last sequence as last seen
}

// New is a projector over log; Run starts it. It fails only when the metrics cannot be
// registered.
func New(cfg Config, log *events.Log) (*Projector, error) {
	def := DefaultConfig()
	if cfg.Name == "" {
		cfg.Name = def.Name
	}
	if cfg.Consumer == "" {
		cfg.Consumer = access.ProjectorConsumer(cfg.Name)
	}
	if cfg.DigestInterval <= 0 {
		cfg.DigestInterval = def.DigestInterval
	}
	if cfg.MetaInterval <= 0 {
		cfg.MetaInterval = def.MetaInterval
	}
	if cfg.Tick <= 0 {
		cfg.Tick = def.Tick
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = def.RetryDelay
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	p := &Projector{cfg: cfg, log: log, lg: lg.With("component", "projector", "replica", cfg.Name)}
	var reg prometheus.Registerer
	if cfg.Metrics != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"replica": cfg.Name}, cfg.Metrics)
	}
	var err error
	if p.metrics, err = newMetrics(reg, p); err != nil {
		return nil, fmt.Errorf("projector: metrics: %w", err)
	}
	return p, nil
}

// Applied is the last stream sequence this replica folded into the view.
func (p *Projector) Applied() uint64 { return p.applied.Load() }

// Lag is the stream's last sequence minus the applied sequence, as last seen (a metric).
func (p *Projector) Lag() uint64 {
	last, applied := p.streamLast.Load(), p.applied.Load()
	if last <= applied {
		return 0
	}
	return last - applied
}

// errNewGeneration ends a session when a rebuild swapped the live generation.
var errNewGeneration = errors.New("projector: the live generation changed")

// Run folds the stream into the view until ctx ends, starting again after errors and when a
// rebuild swaps the generation. It returns nil when ctx ends.
func (p *Projector) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := p.session(ctx)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errNewGeneration):
			p.metrics.rebuilds.Inc()
			p.lg.Info("projector: moving to the new generation")
		default:
			p.metrics.restarts.Inc()
			p.lg.Warn("projector: restarting", "err", err, "in", p.cfg.RetryDelay)
			select {
			case <-ctx.Done():
			case <-time.After(p.cfg.RetryDelay):
			}
		}
	}
	return nil
}

// session projects into the live generation from its applied sequence on, until ctx ends, the
// generation changes or an error.
func (p *Projector) session(ctx context.Context) error {
	js := p.log.JetStream()
	meta, err := openMeta(ctx, js)
	if err != nil {
		return err
	}
	gen, genRev, err := readOrStartGeneration(ctx, meta, true)
	if err != nil {
		return err
	}
	envs, hosts, err := openGeneration(ctx, js, gen)
	if err != nil {
		return err
	}
	applied, appliedRev, err := readApplied(ctx, meta, gen.Gen)
	if err != nil {
		return err
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if err := watchGeneration(sctx, meta, genRev, cancel); err != nil {
		return err
	}
	cons, err := p.consumer(sctx, applied)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("projector: consume: %w", err)
	}
	defer it.Stop()

	dg := &digester{log: p.log, cfg: p.cfg, lg: p.lg, lastEmit: time.Now()}
	if err := dg.start(sctx, applied); err != nil {
		return err
	}
	view := newKVView(envs, hosts)
	p.applied.Store(applied)
	p.lg.Info("projector: started", "gen", gen.Gen, "applied", applied)

	last, flushed, lastFlush := applied, applied, time.Now()
	flush := func() error {
		if last <= flushed {
			return nil
		}
		var err error
		flushed, appliedRev, err = raiseApplied(sctx, meta, gen.Gen, last, appliedRev)
		lastFlush = time.Now()
		return err
	}
	defer func() {
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer fcancel()
		if last > flushed {
			_, _, _ = raiseApplied(fctx, meta, gen.Gen, last, appliedRev)
		}
	}()

	for {
		tctx, tcancel := context.WithTimeout(sctx, p.cfg.Tick)
		msg, err := it.Next(jetstream.NextContext(tctx))
		tcancel()
		if sctx.Err() != nil {
			return context.Cause(sctx)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			if err := p.idle(sctx, flush, dg, last); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("projector: consume: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("projector: consume: %w", err)
		}
		seq := md.Sequence.Stream
		if seq <= last { // a redelivery of what is folded in already
			_ = msg.Ack()
			continue
		}
		if seq != last+1 {
			if err := p.checkHole(sctx, last+1, seq); err != nil {
				return err
			}
		}
		ev, err := events.Decode(msg.Data())
		if err != nil {
			return fmt.Errorf("projector: seq %d (%s): %w", seq, msg.Subject(), err)
		}
		ev.Seq, ev.Subject, ev.Stored = seq, msg.Subject(), md.Timestamp
		err = view.apply(sctx, ev)
		if err != nil {
			if !errors.Is(err, ErrNotApplicable) {
				return err
			}
			p.lg.Warn("projector: event not folded", "seq", seq, "env", ev.Env, "host", ev.Host, "err", err)
		}
		p.metrics.folded(md.Timestamp, err != nil, md.NumPending == 0)
		if err := msg.Ack(); err != nil {
			return fmt.Errorf("projector: ack seq %d: %w", seq, err)
		}
		last = seq
		p.applied.Store(seq)
		p.streamLast.Store(seq + md.NumPending)
		dg.observe(ev)
		if md.NumPending == 0 || time.Since(lastFlush) >= p.cfg.MetaInterval {
			if err := flush(); err != nil {
				return err
			}
		}
		if err := dg.maybeEmit(sctx, last); err != nil {
			return err
		}
	}
}

// checkHole accepts a delivery that skipped from..to-1 only when the stream has no message
// there (a hole); otherwise the skipped events are still due and the session starts again.
func (p *Projector) checkHole(ctx context.Context, from, to uint64) error {
	for seq := from; seq < to; seq++ {
		_, err := p.log.Get(ctx, seq)
		if err == nil {
			return fmt.Errorf("projector: delivery jumped from seq %d to %d; starting again from the view", from-1, to)
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return err
		}
	}
	p.lg.Warn("projector: the stream has no messages here; going on", "seq", from, "next", to)
	return nil
}

// idle runs the periodic work of a projector that had nothing to fold for a tick.
func (p *Projector) idle(ctx context.Context, flush func() error, dg *digester, last uint64) error {
	if err := flush(); err != nil {
		return err
	}
	if streamLast, err := p.log.LastSeq(ctx); err == nil {
		p.streamLast.Store(streamLast)
		p.metrics.observeLag(streamLast <= last)
	}
	return dg.maybeEmit(ctx, last)
}

// watchGeneration cancels ctx with errNewGeneration once the pointer to the live generation
// moves past revision rev.
func watchGeneration(ctx context.Context, meta jetstream.KeyValue, rev uint64, cancel context.CancelCauseFunc) error {
	w, err := meta.Watch(ctx, keyCurrent, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("projector: watch %s/%s: %w", events.ViewBucket, keyCurrent, err)
	}
	// A swap between reading the pointer and starting the watch is not in the updates.
	if e, err := meta.Get(ctx, keyCurrent); err != nil || e.Revision() != rev {
		_ = w.Stop()
		if err != nil {
			return fmt.Errorf("projector: read %s/%s: %w", events.ViewBucket, keyCurrent, err)
		}
		return errNewGeneration
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil && e.Revision() > rev {
					cancel(errNewGeneration)
					return
				}
			}
		}
	}()
	return nil
}

// consumer is this replica's durable consumer, positioned right after applied: kept as it is
// when it already stands there with nothing unacknowledged, reset otherwise (after a crash,
// or when a rebuild swapped in a generation at another sequence).
func (p *Projector) consumer(ctx context.Context, applied uint64) (jetstream.Consumer, error) {
	stream := p.log.Stream()
	name := p.cfg.Consumer
	cons, err := stream.Consumer(ctx, name)
	if err == nil {
		info := cons.CachedInfo()
		if info.AckFloor.Stream == applied && info.NumAckPending == 0 && info.Delivered.Stream == applied {
			return cons, nil
		}
		if _, err := stream.ResetConsumerToSequence(ctx, name, applied+1); err == nil {
			return stream.Consumer(ctx, name)
		}
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("projector: reposition consumer %s: %w", name, err)
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("projector: consumer %s: %w", name, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "waggle projector replica " + p.cfg.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if applied > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, applied+1
	}
	cons, err = stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("projector: create consumer %s: %w", name, err)
	}
	return cons, nil
}

// digestAggregate is the subject of the digest chain; appends to it are optimistic, so of
// several replicas only one stores each digest.
var digestAggregate = events.AuditSubject(events.AuditDigest)

// digester cuts audit digests from the events the projector folds.
type digester struct {
	log      *events.Log
	cfg      Config
	lg       *slog.Logger
	rng      audit.Range
	head     events.Head // the digest chain's last event
	lastEmit time.Time
}

// start finds the last stored digest and collects the events after it up to applied.
func (d *digester) start(ctx context.Context, applied uint64) error {
	if d.cfg.DigestEvery <= 0 {
		return nil
	}
	head, err := d.log.Head(ctx, digestAggregate)
	if err != nil {
		return fmt.Errorf("projector: digest head: %w", err)
	}
	d.head = head
	d.rng.Reset(0)
	if head.Seq > 0 {
		ev, err := d.log.Get(ctx, head.Seq)
		if err != nil {
			return fmt.Errorf("projector: last digest: %w", err)
		}
		var dg events.Digest
		if err := ev.DecodeData(&dg); err != nil {
			return fmt.Errorf("projector: last digest: %w", err)
		}
		d.rng.Reset(dg.LastSeq)
	}
	if applied <= d.rng.Covered() {
		return nil
	}
	err = d.log.Scan(ctx, events.AllSubjects, d.rng.Covered()+1, func(ev *events.Event) error {
		if ev.Seq > applied {
			return errStop
		}
		d.rng.Add(ev)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("projector: read events after the last digest: %w", err)
	}
	return nil
}

// errStop ends a replay early.
var errStop = errors.New("stop")

// observe records a folded event; a digest (anyone's) covers its range.
func (d *digester) observe(ev *events.Event) {
	if d.cfg.DigestEvery <= 0 {
		return
	}
	d.rng.Add(ev)
	if ev.Env != "" || ev.Host != "" || ev.Type != events.AuditDigest {
		return
	}
	var dg events.Digest
	if ev.DecodeData(&dg) == nil {
		d.rng.CoverThrough(dg.LastSeq)
	}
	if ev.Seq >= d.head.Seq {
		d.head = events.Head{Seq: ev.Seq, Hash: events.Hash(ev.Raw)}
	}
}

// maybeEmit appends a digest when enough events are uncovered or the interval passed. The
// append expects the digest chain's head, so when another replica stored one first this one
// gives way and learns the new digest from the stream.
func (d *digester) maybeEmit(ctx context.Context, applied uint64) error {
	if d.cfg.DigestEvery <= 0 || applied < d.head.Seq {
		return nil
	}
	n := d.rng.Len()
	onlyLastDigest := n == 1 && d.rng.Next()-1 == d.head.Seq
	due := n >= d.cfg.DigestEvery || (n > 0 && !onlyLastDigest && time.Since(d.lastEmit) >= d.cfg.DigestInterval)
	if !due {
		return nil
	}
	dg := d.rng.Cut(d.cfg.DigestEvery)
	ev, err := events.NewAuditEvent(events.AuditDigest, "system", dg)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	head, err := d.log.Append(ctx, ev, d.head)
	if errors.Is(err, events.ErrConflict) {
		head, err = d.log.Head(ctx, digestAggregate)
		if err != nil {
			return fmt.Errorf("projector: digest head: %w", err)
		}
		d.head = head
		return nil
	}
	if err != nil {
		return fmt.Errorf("projector: append digest: %w", err)
	}
	d.head, d.lastEmit = head, time.Now()
	d.rng.CoverThrough(dg.LastSeq)
	d.lg.Debug("projector: digest appended", "seq", head.Seq, "first", dg.FirstSeq, "last", dg.LastSeq)
	return nil
}
