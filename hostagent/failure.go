// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package hostagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/waggle-dev/waggle/events"
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
				if err := a.hostFailed(ctx, m.Name, m.Meta.JoinSeq); err != nil && ctx.Err() == nil {
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
