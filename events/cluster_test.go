// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startCluster starts an n-node embedded JetStream cluster on loopback, every node routing
// to every node (itself included).
func startCluster(t *testing.T, n int) []*Server {
	t.Helper()
	return startClusterTLS(t, n, nil)
}

// startClusterTLS is startCluster with client and route connections over TLS when files is set.
// The ports are free when chosen, but another process (a test of another package) may take
// one before its node listens and answer the routes: a cluster that does not come up is
// started again on other ports.
func startClusterTLS(t *testing.T, n int, files *TLSFiles) []*Server {
	t.Helper()
	const attempts = 3
	for attempt := 1; ; attempt++ {
		nodes, err := tryStartCluster(t, n, files)
		if err == nil {
			for _, srv := range nodes {
				t.Cleanup(srv.Shutdown)
			}
			return nodes
		}
		if attempt == attempts {
			t.Fatal(err)
		}
		t.Logf("cluster attempt %d: %v; again on other ports", attempt, err)
	}
}

// tryStartCluster starts the n nodes on fresh ports, or none.
func tryStartCluster(t *testing.T, n int, files *TLSFiles) ([]*Server, error) {
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var nodes []*Server
	for i := range n {
		srv, err := StartServer(ServerConfig{
			DataDir:     t.TempDir(),
			ServerName:  fmt.Sprintf("n%d", i),
			ClusterName: "waggle-test",
			ClusterPort: ports[i],
			Routes:      routes,
			TLS:         files,
		})
		if err != nil {
			for _, started := range nodes {
				started.Shutdown()
			}
			return nil, fmt.Errorf("start node %d: %w", i, err)
		}
		nodes = append(nodes, srv)
	}
	return nodes, nil
}

// freePorts finds n free loopback TCP ports (free when this returns; another process may
// still take one before it is used).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func clientURLs(nodes []*Server) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.ClientURL())
	}
	return strings.Join(urls, ",")
}

type ackedEvent struct {
	seq uint64
	id  string
	env string
}

// TestClusterKeepsAckedEventsWhenLeaderDies: writers append to an R3 stream, the stream
// leader is shut down mid-way, the writers carry on (retrying unknown outcomes with the same
// event and head), and every acknowledged event is on the survivors, in unbroken chains.
func TestClusterKeepsAckedEventsWhenLeaderDies(t *testing.T) {
	nodes := startCluster(t, 3)
	nc, err := nats.Connect(clientURLs(nodes), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	start := time.Now()
	l := openTestLog(t, nc, WithReplicas(3))
	t.Logf("R3 stream created %s after the cluster started", time.Since(start))
	ctx := testCtx(t)

	const writers, beforeKill, afterKill = 4, 100, 100
	var mu sync.Mutex
	var acked []ackedEvent
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		env := fmt.Sprintf("e%d", w)
		wg.Go(func() {
			if err := appendUntil(ctx, l, env, stop, func(a ackedEvent) {
				mu.Lock()
				acked = append(acked, a)
				mu.Unlock()
			}); err != nil {
				errs <- err
			}
		})
	}
	waitFor(t, func() bool { return ackedCount() >= beforeKill })

	info, err := l.Stream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	var survivors []*Server
	for _, n := range nodes {
		if n.NATS().Name() == leader {
			killed := time.Now()
			n.Shutdown()
			t.Logf("stream leader %s shut down after %d acks (took %s)", leader, ackedCount(), time.Since(killed))
		} else {
			survivors = append(survivors, n)
		}
	}
	if len(survivors) != 2 {
		t.Fatalf("stream leader %q not among the nodes", leader)
	}
	atKill := ackedCount()
	waitFor(t, func() bool { return ackedCount() >= atKill+afterKill })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every acknowledged event is readable at its sequence, and each chain is whole.
	perEnv := map[string]int{}
	var maxSeq uint64
	for _, a := range acked {
		ev, err := l.Get(ctx, a.seq)
		if err != nil || ev.ID != a.id {
			t.Fatalf("acked seq %d (%s): got %v, %v", a.seq, a.id, ev, err)
		}
		perEnv[a.env]++
		maxSeq = max(maxSeq, a.seq)
	}
	for w := range writers {
		env := fmt.Sprintf("e%d", w)
		evs, _, err := l.Load(ctx, EnvAggregate("h1", env))
		if err != nil {
			t.Fatal(err)
		}
		checkChain(t, evs)
		if len(evs) != perEnv[env] {
			t.Fatalf("%s: %d events stored, %d acknowledged", env, len(evs), perEnv[env])
		}
	}
	// Both survivors hold the whole stream in their own store.
	for _, n := range survivors {
		waitFor(t, func() bool {
			st, err := localStreamState(n)
			return err == nil && st.LastSeq >= maxSeq && st.Msgs == st.LastSeq
		})
	}
	t.Logf("%d events acknowledged (%d after the leader died), all present on both survivors", len(acked), len(acked)-atKill)

	// A lost-ack retry on the replicated stream (which checks the message id before the
	// expectation) is stored once too.
	head, err := l.Head(ctx, EnvAggregate("h1", "e0"))
	if err != nil {
		t.Fatal(err)
	}
	lost := envEvent(t, "h1", "e0", EnvExec, nil)
	publishWithoutAck(t, nc, lost, head)
	waitLastSeq(t, l, maxSeq+1)
	got, err := l.Append(ctx, lost, head)
	if err != nil || got.Seq != maxSeq+1 || lost.Seq != got.Seq {
		t.Fatalf("retry after lost ack: %+v, %v (event seq %d), want seq %d", got, err, lost.Seq, maxSeq+1)
	}
	if last, err := l.LastSeq(ctx); err != nil || last != maxSeq+1 {
		t.Fatalf("last seq %d, %v: the retry was stored twice", last, err)
	}
}

// appendUntil appends events to one environment until stop closes, reporting each ack. An
// append with an unknown outcome (timeout, no leader) is retried with the same event and
// head; a conflict re-reads the head.
func appendUntil(ctx context.Context, l *Log, env string, stop <-chan struct{}, onAck func(ackedEvent)) error {
	var head Head
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		ev, err := NewEnvEvent("h1", env, EnvTouched, "tenant-1", nil)
		if err != nil {
			return err
		}
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			h, err := l.Append(actx, ev, head)
			cancel()
			if err == nil {
				head = h
				onAck(ackedEvent{seq: ev.Seq, id: ev.ID, env: env})
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
			if errors.Is(err, ErrConflict) {
				hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if h, err := l.Head(hctx, EnvAggregate("h1", env)); err == nil {
					head = h
				}
				cancel()
				continue
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func localStreamState(n *Server) (server.StreamState, error) {
	acc, err := n.NATS().JszAccount(&server.JSzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Streams: true})
	if err != nil {
		return server.StreamState{}, err
	}
	for _, sd := range acc.Streams {
		if sd.Name == StreamName {
			return sd.State, nil
		}
	}
	return server.StreamState{}, fmt.Errorf("%s: no local stream %s", n.NATS().Name(), StreamName)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
