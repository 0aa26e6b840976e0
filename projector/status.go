// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package projector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
)

// Status is the projection's state as an operator sees it.
type Status struct {
	Generation Generation      `json:"generation"`
	Applied    uint64          `json:"applied"`  // the sequence the live view reflects
	LastSeq    uint64          `json:"last_seq"` // the stream's last sequence
	Lag        uint64          `json:"lag"`      // LastSeq - Applied
	Replicas   []ReplicaStatus `json:"replicas"`
}

// ReplicaStatus is one projector replica's durable consumer.
type ReplicaStatus struct {
	Name       string `json:"name"`
	Delivered  uint64 `json:"delivered"`   // last stream sequence delivered to it
	AckFloor   uint64 `json:"ack_floor"`   // every sequence up to here is acknowledged
	AckPending int    `json:"ack_pending"` // delivered, not yet acknowledged
	Pending    uint64 `json:"pending"`     // not yet delivered
	Active     bool   `json:"active"`      // a client is pulling
}

// ReadStatus reads the live generation, its applied sequence, the stream's length and every
// replica's consumer.
func ReadStatus(ctx context.Context, log *events.Log) (Status, error) {
	r, err := NewReader(log.JetStream())
	if err != nil {
		return Status{}, err
	}
	var st Status
	if st.Generation, err = r.Generation(ctx); err != nil {
		return Status{}, err
	}
	if st.Applied, err = r.Freshness(ctx); err != nil {
		return Status{}, err
	}
	if st.LastSeq, err = log.LastSeq(ctx); err != nil {
		return Status{}, err
	}
	if st.LastSeq > st.Applied {
		st.Lag = st.LastSeq - st.Applied
	}
	list := log.Stream().ListConsumers(ctx)
	for info := range list.Info() {
		// (a name from a credential ends in its secret suffix: the admin sees it)
		name, ok := strings.CutPrefix(info.Name, access.ProjectorConsumer(""))
		if !ok {
			continue
		}
		st.Replicas = append(st.Replicas, ReplicaStatus{Name: name, Delivered: info.Delivered.Stream,
			AckFloor: info.AckFloor.Stream, AckPending: info.NumAckPending, Pending: info.NumPending,
			Active: info.PushBound || info.NumWaiting > 0})
	}
	if err := list.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return Status{}, fmt.Errorf("projector: list consumers: %w", err)
	}
	return st, nil
}
