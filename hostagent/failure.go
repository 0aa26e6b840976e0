// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/hostrpc"
	"github.com/waggle-dev/waggle/hostagent/membership"
)

// runFailures reports the failure of every member that departs without having appended
// host.left first, until ctx ends.
func (a *Agent) runFailures(ctx context.Context, departed <-chan membership.Member) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-departed:
			a.goTask(func() {
				err := a.hostFailed(ctx, m.Name, m.Meta.JoinSeq)
				switch {
				case errors.Is(err, ErrNotFailed):
					a.logger.Info("departed member still answers over NATS; not reporting it failed", "peer", m.Name)
				case err != nil && ctx.Err() == nil:
					a.logger.Error("report failed host", "peer", m.Name, "err", err)
				}
			})
		}
	}
}

// hostFailed appends host.failed for the incarnation of host that joined at joinSeq (0: its
// latest), then lost for each environment it held. Every surviving member runs this; the
// expected sequence on the host aggregate and a message id derived from the incarnation let
// exactly one host.failed through, and the state machine lets one lost through per environment.
func (a *Agent) hostFailed(ctx context.Context, host string, joinSeq uint64) error {
	if events.ValidID(host) != nil {
		return fmt.Errorf("dead member %q is not a host id", host)
	}
	if err := a.confirmFailed(ctx, host); err != nil {
		return err
	}
	for range maxAppendAttempts {
		evs, head, err := a.log.Load(ctx, events.HostAggregate(host))
		if err != nil {
			return fmt.Errorf("load host %s: %w", host, err)
		}
		var joined *events.Event
		for _, ev := range evs {
			if ev.Type == events.HostJoined {
				joined = ev
			}
		}
		if joined == nil {
			return nil // never announced itself: nothing of it in the log
		}
		switch last := evs[len(evs)-1].Type; {
		case joinSeq != 0 && joined.Seq != joinSeq:
			a.logger.Info("departed member has rejoined since; not reporting", "peer", host, "join_seq", joinSeq, "latest", joined.Seq)
			return nil
		case last == events.HostLeft:
			return nil // a clean stop, not a failure
		case last == events.HostFailed:
			return a.markHostLost(ctx, host) // reported already: make sure its environments are marked
		}
		ev, err := events.NewHostEvent(host, events.HostFailed, a.principal,
			events.HostFailure{DetectedBy: a.cfg.HostID, JoinSeq: joined.Seq})
		if err != nil {
			return err
		}
		ev.ID = failureID(host, joined)
		_, err = a.log.Append(ctx, ev, head)
		if errors.Is(err, events.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("append host.failed of %s: %w", host, err)
		}
		a.logger.Warn("host failed", "peer", host, "join_seq", joined.Seq)
		break
	}
	return a.markHostLost(ctx, host)
}

// pingTimeout bounds a ping of a peer (gossip probes time out after 100 ms), and the round
// trip to NATS that tells, when the peer did not answer, whether this host reaches NATS.
const pingTimeout = 300 * time.Millisecond

// confirmGiveUp bounds how long confirmFailed keeps trying while this host does not reach
// NATS; the survivors that do report the failure meanwhile.
const confirmGiveUp = time.Minute

// ErrNotFailed means a peer that gossip says is dead still answers over NATS: only the gossip
// between it and this host is cut (or this host was cut off and is back), so it is not failed.
var ErrNotFailed = errors.New("peer answers over NATS")

// confirmFailed returns nil once host, which gossip says is dead, is confirmed failed: it
// does not answer a ping over NATS while this host does reach NATS. A host cut off the
// network sees every peer depart; without this check its reports, held in its connection,
// would reach the log once the network heals and declare live hosts failed. While this host
// does not reach NATS it asks again (until confirmGiveUp); a peer that answers is not failed
// (ErrNotFailed).
func (a *Agent) confirmFailed(ctx context.Context, host string) error {
	give := time.Now().Add(confirmGiveUp)
	for {
		answers, err := a.peerAnswers(ctx, host)
		switch {
		case err == nil && answers:
			return fmt.Errorf("%s: %w", host, ErrNotFailed)
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(give):
			return fmt.Errorf("cannot confirm that %s failed: %w", host, err)
		}
		a.logger.Warn("cannot confirm a peer's failure: this host does not reach NATS; asking again", "peer", host, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pingTimeout):
		}
	}
}

// peerAnswers pings host over NATS. No responders (its connection is gone) or no answer while
// this host's own round trips to NATS, before and after the ping, succeed mean it does not
// answer; an error means this host cannot tell (it does not reach NATS). The round trip
// before matters after a partition heals: what this host sent meanwhile goes out only at the
// connection's next retransmission, which a ping must not mistake for the peer's silence.
func (a *Agent) peerAnswers(ctx context.Context, host string) (bool, error) {
	if err := a.nc.FlushTimeout(pingTimeout); err != nil {
		return false, fmt.Errorf("own round trip to NATS: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	_, err := a.nc.RequestWithContext(pctx, hostrpc.Subject(host, hostrpc.OpPing), nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	}
	if ferr := a.nc.FlushTimeout(pingTimeout); ferr != nil {
		return false, fmt.Errorf("ping %s: %w; own round trip to NATS: %w", host, err, ferr)
	}
	return false, nil
}

// failureID is the event id of the failure of host's incarnation that joined with joined:
// the same on every detector, so a retried or concurrent append is deduplicated by NATS.
func failureID(host string, joined *events.Event) string {
	return events.DerivedID(joined.Time, "host.failed", host, strconv.FormatUint(joined.Seq, 10))
}

// markHostLost appends lost for every environment on host (live or paused).
func (a *Agent) markHostLost(ctx context.Context, host string) error {
	aggs, err := foldHost(ctx, a.log, host)
	if err != nil {
		return err
	}
	var errs []error
	for env, g := range aggs {
		if !events.OnHost(g.State) {
			continue
		}
		ok, err := g.appendEvent(ctx, a.log, events.EnvLost, a.principal, "",
			events.Reason{Reason: fmt.Sprintf("host %s failed (detected by %s)", host, a.cfg.HostID)})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			a.logger.Warn("environment lost with its host", "env", env, "peer", host)
		}
	}
	return errors.Join(errs...)
}
