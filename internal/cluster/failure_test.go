// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/projector"
)

// Targets the failure tests check.
const (
	// lostTarget: a host agent that is SIGKILLed or cut off has its environments lost within it.
	lostTarget = 3 * time.Second
	// resumeTarget: appends resume within it after the stream leader is SIGKILLed.
	resumeTarget = 2 * time.Second
)

// TestClusterFailures runs one cluster of separate processes (3 JetStream nodes, 2
// projectors, 3 host agents of which host3 in a network namespace of its own, 2 routers) under
// a steady load of 4 MCP clients spread over both routers, and, one after the other: SIGKILLs
// a router, a projector, the stream leader and a host agent, cuts host3 off the network and
// heals it, and stops the whole cluster and starts it again from disk. Each subtest logs its
// figures and checks them; nothing acknowledged may be lost or applied twice.
func TestClusterFailures(t *testing.T) {
	cfg := testConfig(t)
	cfg.Drain = hostagent.DrainKeep // the restart from disk adopts the VMs
	c := upForTest(t, cfg)
	l := newLoad(t, c, 4)
	s := newSession(t, c.RouterURLs()[0], c.APIKey(), "waggle-cluster-test")

	l.begin(t)
	l.waitCalls(l.phaseStart, 2, 8*time.Minute)
	l.end()
	l.figures(context.Background(), "warm-up", false)

	t.Run("router_kill", func(t *testing.T) { testRouterKill(t, c, l) })
	t.Run("projector_kill", func(t *testing.T) { testProjectorKill(t, c, l) })
	t.Run("stream_leader_kill", func(t *testing.T) { testLeaderKill(t, c, l) })
	t.Run("hostagent_kill", func(t *testing.T) { testHostAgentKill(t, c, l, s) })
	t.Run("partition", func(t *testing.T) { testPartition(t, c, l, s) })
	t.Run("restart_from_disk", func(t *testing.T) { testRestart(t, c, cfg, l, s) })
}

// testRouterKill: router1 is SIGKILLed while creates are in flight on it; its clients retry
// on router2 (creates with their idempotency key), and nothing acknowledged is lost or
// applied twice, no call fails.
func testRouterKill(t *testing.T, c *Cluster, l *load) {
	ctx := context.Background()
	l.begin(t)
	defer l.end()
	l.waitCalls(l.phaseStart, 2, 3*time.Minute)
	l.requestCreates()
	var flying attempt
	waitUntil(t, 3*time.Minute, "a create in flight on router1 for a second", func() (bool, string) {
		flying = l.inFlight("create_environment", 0)
		return !flying.start.IsZero() && time.Since(flying.start) > time.Second, ""
	})
	killed := time.Now()
	if err := c.Kill("router1"); err != nil {
		t.Fatal(err)
	}
	l.waitCalls(killed, 2, 6*time.Minute)
	firstAnswer, flyingAnswered := l.recovery(killed, 0, flying.key)
	if err := c.Restart(ctx, "router1"); err != nil {
		t.Fatal(err)
	}
	l.end()
	_, a := l.figures(ctx, "router kill", false)
	retriedCreates := l.retriedCreates(killed)
	t.Logf("router kill: SIGKILL of router1 with client %d's create in flight on it (for %s); router1's clients had their first call answered by router2 %s after the kill "+
		"(the longest of them), the create in flight %s after (router2 carried its environment on to started); "+
		"creates retried on router2 with their idempotency key %d, keys %d, each started one environment",
		flying.client, killed.Sub(flying.start).Round(time.Millisecond), firstAnswer.Round(time.Millisecond), flyingAnswered.Round(time.Millisecond), retriedCreates, a.keys)
	if retriedCreates == 0 {
		t.Error("no create was retried with its idempotency key after the kill")
	}
}

// testProjectorKill: proj1 is SIGKILLed under load and restarted; its consumer catches up and
// the view's hash equals a full replay's.
func testProjectorKill(t *testing.T, c *Cluster, l *load) {
	ctx := context.Background()
	l.begin(t)
	defer l.end()
	l.waitCalls(l.phaseStart, 2, 3*time.Minute)
	killed := time.Now()
	if err := c.Kill("proj1"); err != nil {
		t.Fatal(err)
	}
	l.waitCalls(killed, 2, 3*time.Minute)
	behind := lastSeq(t, c)
	restarted := time.Now()
	if err := c.Restart(ctx, "proj1"); err != nil {
		t.Fatal(err)
	}
	durable, err := access.Durable(c.CredsFile(access.Projector, "proj1"))
	if err != nil {
		t.Fatal(err)
	}
	var caughtUp time.Duration
	waitUntil(t, 2*time.Minute, "proj1's consumer caught up", func() (bool, string) {
		st, err := projector.ReadStatus(ctx, c.Log())
		if err != nil {
			return false, err.Error()
		}
		for _, r := range st.Replicas {
			if r.Name == strings.TrimPrefix(durable, access.ProjectorConsumer("")) && r.Delivered >= behind && r.Pending == 0 && r.AckPending == 0 {
				caughtUp = time.Since(restarted)
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Replicas)
	})
	l.end()
	live, replay := viewConverges(t, c)
	l.figures(ctx, "projector kill", false)
	t.Logf("projector kill: proj1 down %s; after its restart its consumer caught up with seq %d in %s; view hash %s, full replay %s",
		restarted.Sub(killed).Round(time.Millisecond), behind, caughtUp.Round(time.Millisecond), live[:16], replay[:16])
}

// testLeaderKill: the stream leader is SIGKILLed under load; appends resume, every event
// acknowledged before is still there, the view converges and `waggle audit verify` passes.
func testLeaderKill(t *testing.T, c *Cluster, l *load) {
	ctx := context.Background()
	l.begin(t)
	defer l.end()
	l.waitCalls(l.phaseStart, 2, 3*time.Minute)
	before := snapshot(t, c)
	leader, err := c.StreamLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	atKill := lastSeq(t, c)
	killed := time.Now()
	if err := c.Kill(leader.Name); err != nil {
		t.Fatal(err)
	}
	var resumed time.Duration
	waitUntil(t, time.Minute, "an append after the kill", func() (bool, string) {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		seq, err := c.Log().LastSeq(actx)
		if err == nil && seq > atKill {
			resumed = time.Since(killed)
			return true, ""
		}
		return false, fmt.Sprintf("last seq %d (%v)", seq, err)
	})
	l.waitCalls(killed, 2, 3*time.Minute)
	newLeader, err := c.StreamLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, leader.Name); err != nil {
		t.Fatal(err)
	}
	l.end()
	kept := checkKept(t, c, before)
	viewConverges(t, c)
	auditVerify(t, c)
	cnt, _ := l.figures(ctx, "stream leader kill", true)
	t.Logf("stream leader kill: SIGKILL of %s (leader at seq %d); appends resumed after %s (new leader %s; target %s); "+
		"%d events acknowledged before the kill all there; %d calls failed meanwhile",
		leader.Name, atKill, resumed.Round(time.Millisecond), newLeader.Name, resumeTarget, kept, cnt.failed)
	// What nats-server's raft does guarantee: a follower campaigns at most 9 s after the last
	// heartbeat, and wins within a few campaign rounds.
	if limit := 12 * time.Second; resumed > limit {
		t.Errorf("stream leader kill: appends resumed after %s, beyond nats-server's election bound of %s", resumed.Round(time.Millisecond), limit)
	}
	if resumed > resumeTarget {
		t.Logf("stream leader kill: appends resumed after %s, over the %s target: a JetStream stream elects its new leader "+
			"after a random election timeout of 4-9 s (nats-server's raft), which a SIGKILL cannot shorten", resumed.Round(time.Millisecond), resumeTarget)
	}
}

// testHostAgentKill: a host agent with environments is SIGKILLed; they become lost within
// lostTarget, calls on them fail saying the host failed, and new environments land on the
// survivors; the restarted agent removes the lost environments' VMs.
func testHostAgentKill(t *testing.T, c *Cluster, l *load, s *session) {
	ctx := context.Background()
	l.begin(t)
	defer l.end()
	l.waitCalls(l.phaseStart, 2, 3*time.Minute)
	victims, victim, witness := onHosts(t, l, s, "host1", "host2")
	since := lastSeq(t, c)
	killed := time.Now()
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	failed := firstEvent(t, c, events.HostSubject(victim, events.HostFailed), since, 30*time.Second)
	var lostAfter time.Duration
	for _, env := range victims {
		lost := firstEvent(t, c, events.EnvSubject(victim, env, events.EnvLost), since, 30*time.Second)
		lostAfter = max(lostAfter, lost.Stored.Sub(killed))
	}
	msg := s.fails(t, "execute", map[string]any{"environment_id": witness, "code": "echo hi"})
	if !strings.Contains(msg, "host "+victim+" failed") {
		t.Errorf("execute on an environment of the killed host: %q does not say the host failed", msg)
	}
	l.waitCalls(killed, 2, 6*time.Minute)
	for env, host := range l.envs() {
		if host == victim {
			t.Errorf("environment %s is on the killed host %s", env, victim)
		}
	}
	restarted := time.Now()
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the lost environments' VMs removed by the restarted "+victim, func() (bool, string) {
		left := c.vmsOn(t, victim)
		return !slices.ContainsFunc(victims, func(e string) bool { return left[e] }), fmt.Sprint(left)
	})
	l.end()
	cnt, _ := l.figures(ctx, "host agent kill", true)
	t.Logf("host agent kill: SIGKILL of %s with %d environments; host.failed after %s, all lost after %s (target %s); "+
		"the error on them: %q; %d calls failed, all new environments on the survivors; restarted and rejoined in %s",
		victim, len(victims), failed.Stored.Sub(killed).Round(time.Millisecond), lostAfter.Round(time.Millisecond), lostTarget,
		msg, cnt.failed, time.Since(restarted).Round(time.Millisecond))
	if lostAfter > lostTarget {
		t.Errorf("environments lost %s after the kill, target %s", lostAfter.Round(time.Millisecond), lostTarget)
	}
}

// testPartition: host3 is cut off the network and healed. Its environments are lost within
// lostTarget and none is live in the view after it; no other host is declared failed; host3
// serves none of them after healing (fenced), rejoins and takes new placements.
func testPartition(t *testing.T, c *Cluster, l *load, s *session) {
	ctx := context.Background()
	const host = "host3"
	l.begin(t)
	defer l.end()
	l.waitCalls(l.phaseStart, 2, 3*time.Minute)
	cutOff, _, witness := onHosts(t, l, s, host)
	gossipBefore := strings.Count(readFile(t, c.Proc("host1").Log), `peer=`+host)
	since := lastSeq(t, c)
	cut := time.Now()
	if err := c.Cut(host); err != nil {
		t.Fatal(err)
	}
	healed := false
	t.Cleanup(func() {
		if !healed {
			_ = c.Heal(host)
		}
	})
	// Watch the view while host3 is cut off: when was each of its environments last live?
	watch, stopWatch := context.WithCancel(ctx)
	lastLive := map[string]time.Duration{}
	var watchWG sync.WaitGroup
	watchWG.Go(func() {
		reader, err := projector.NewReader(c.Log().JetStream())
		if err != nil {
			t.Error(err)
			return
		}
		for watch.Err() == nil {
			for _, env := range cutOff {
				rctx, cancel := context.WithTimeout(watch, time.Second)
				e, err := reader.Env(rctx, env)
				cancel()
				if err == nil && events.Live(e.State) {
					lastLive[env] = time.Since(cut)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	failed := firstEvent(t, c, events.HostSubject(host, events.HostFailed), since, 30*time.Second)
	var lostAfter time.Duration
	lost := map[string]*events.Event{}
	for _, env := range cutOff {
		ev := firstEvent(t, c, events.EnvSubject(host, env, events.EnvLost), since, 30*time.Second)
		lostAfter, lost[env] = max(lostAfter, ev.Stored.Sub(cut)), ev
	}
	// Stay cut off a while after the detection (the clients run into it), then heal.
	time.Sleep(max(0, lostTarget+2*time.Second-time.Since(cut)))
	if err := c.Heal(host); err != nil {
		t.Fatal(err)
	}
	healed = true
	healAt := time.Now()
	stopWatch()
	watchWG.Wait()
	rejoined := firstEvent(t, c, events.HostSubject(host, events.HostJoined), failed.Seq, time.Minute)
	waitUntil(t, time.Minute, host+" live in the view again", func() (bool, string) {
		ok, err := c.hostLive(ctx, host, failed.Seq)
		return ok, fmt.Sprint(err)
	})
	// Fenced: none of its lost environments served after being declared lost, their VMs gone.
	msg := s.fails(t, "execute", map[string]any{"environment_id": witness, "code": "echo hi"})
	waitUntil(t, time.Minute, host+"'s VMs of the lost environments removed", func() (bool, string) {
		left := c.vmsOn(t, host)
		return !slices.ContainsFunc(cutOff, func(e string) bool { return left[e] }), fmt.Sprint(left)
	})
	// An audit event records when the host served the call (its time); one served before the
	// environment was declared lost may reach the log after the lost event (the host was cut
	// off while it appended it), which is a late record, not serving after lost.
	served, late := 0, 0
	for _, env := range cutOff {
		evs, _, err := c.Log().Load(ctx, events.EnvAggregate(host, env))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if !events.IsAudit(ev.Type) || ev.Type == events.EnvTouched || ev.Seq < lost[env].Seq {
				continue
			}
			if ev.Time.After(lost[env].Time) {
				served++
				t.Errorf("%s served %s on %s at %s, after it was declared lost at %s", host, ev.Type, env,
					ev.Time.Format("15:04:05.000"), lost[env].Time.Format("15:04:05.000"))
			} else {
				late++
			}
		}
	}
	wrongly := 0
	_ = c.Log().Scan(ctx, events.HostSubject("*", events.HostFailed), since+1, func(ev *events.Event) error {
		if ev.Host != host {
			wrongly++
			t.Errorf("%s was declared failed while only %s was cut off", ev.Host, host)
		}
		return nil
	})
	liveTooLong := 0
	for env, d := range lastLive {
		if d > lostTarget {
			liveTooLong++
			t.Errorf("%s of the cut-off host still live in the view %s after the cut", env, d.Round(time.Millisecond))
		}
	}
	// Rejoined the gossip, and takes new placements.
	waitUntil(t, time.Minute, "host1 seeing "+host+" in the gossip again", func() (bool, string) {
		return strings.Count(readFile(t, c.Proc("host1").Log), `peer=`+host) > gossipBefore, ""
	})
	fresh, _ := s.createOn(t, host)
	if out := s.ok(t, "execute", map[string]any{"environment_id": fresh, "code": "echo fresh"}); !strings.Contains(out, "fresh") {
		t.Errorf("execute on %s's new environment: %s", host, out)
	}
	l.waitCalls(healAt, 2, 3*time.Minute)
	l.end()
	cnt, _ := l.figures(ctx, "partition", true)
	t.Logf("partition: %s cut off with %d environments; host.failed after %s, all lost after %s (target %s); "+
		"live in the view after that: %d; other hosts declared failed: %d; served after lost: %d (calls served before, recorded after: %d); cut off for %s; "+
		"after healing rejoined (host.joined) in %s and took a new environment; the error on a lost one: %q; %d calls failed",
		host, len(cutOff), failed.Stored.Sub(cut).Round(time.Millisecond), lostAfter.Round(time.Millisecond), lostTarget,
		liveTooLong, wrongly, served, late, healAt.Sub(cut).Round(time.Millisecond), rejoined.Stored.Sub(healAt).Round(time.Millisecond), msg, cnt.failed)
	if lostAfter > lostTarget {
		t.Errorf("environments lost %s after the cut, target %s", lostAfter.Round(time.Millisecond), lostTarget)
	}
}

// testRestart: the whole cluster stops (host agents keep their VMs) and starts again from
// disk: history, view and API key are intact, every VM is adopted (same boot) or, the one
// stopped meanwhile, marked lost, and none is leaked.
func testRestart(t *testing.T, c *Cluster, cfg Config, l *load, s *session) {
	ctx := context.Background()
	before := snapshot(t, c)
	hashBefore, _ := viewConverges(t, c)
	reader, err := projector.NewReader(c.Log().JetStream())
	if err != nil {
		t.Fatal(err)
	}
	envs, err := reader.Envs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	boot := map[string]string{}
	for _, e := range envs {
		if e.State == events.StateRunning {
			boot[e.ID] = s.ok(t, "execute", map[string]any{"environment_id": e.ID, "code": "cat /proc/sys/kernel/random/boot_id"})
		}
	}
	stopped := time.Now()
	if err := c.Down(ctx); err != nil {
		t.Fatalf("cluster down: %v", err)
	}
	downTook := time.Since(stopped)
	kept, err := c.LeftoverVMs(ctx)
	if err != nil || len(kept) != len(boot) {
		t.Fatalf("%d VMs kept (%v) for %d running environments", len(kept), err, len(boot))
	}
	// One VM dies while the cluster is down: the restart must mark its environment lost.
	gone := kept[0].Machine.ID()
	if err := kept[0].Machine.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Drain = hostagent.DrainDestroy // from now on Down leaves no VM
	started := time.Now()
	c2 := upForTest(t, cfg)
	upTook := time.Since(started)
	l.connect(t, c2)
	if c2.APIKey() != c.APIKey() {
		t.Fatalf("API key %q after the restart, was %q", c2.APIKey(), c.APIKey())
	}
	s2 := newSession(t, c2.RouterURLs()[1], c2.APIKey(), "waggle-cluster-test") // the old key authenticates on the new routers
	kept2 := checkKept(t, c2, before)
	live, _ := viewConverges(t, c2)
	auditVerify(t, c2)
	adopted, lost := 0, 0
	for env, id := range boot {
		st := s2.state(t, env)
		switch {
		case env == gone:
			if st != events.StateLost {
				t.Errorf("environment %s whose VM was stopped while the cluster was down is %s, want lost", env, st)
			}
			lost++
		case st != events.StateRunning:
			t.Errorf("environment %s is %s after the restart, want running (adopted)", env, st)
		default:
			if got := s2.ok(t, "execute", map[string]any{"environment_id": env, "code": "cat /proc/sys/kernel/random/boot_id"}); got != id {
				t.Errorf("environment %s rebooted: boot id %s, was %s", env, got, id)
			}
			adopted++
		}
	}
	// None leaked: the VMs that run are exactly the running environments'.
	reader2, err := projector.NewReader(c2.Log().JetStream())
	if err != nil {
		t.Fatal(err)
	}
	envs2, err := reader2.Envs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var running, vms []string
	for _, e := range envs2 {
		if e.State == events.StateRunning {
			running = append(running, e.ID)
		}
	}
	left, err := c2.LeftoverVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range left {
		vms = append(vms, v.Machine.ID())
	}
	slices.Sort(running)
	slices.Sort(vms)
	if !slices.Equal(running, vms) {
		t.Errorf("VMs %v, running environments %v", vms, running)
	}
	l.begin(t)
	defer l.end()
	l.waitCalls(l.phaseStart, 2, 5*time.Minute)
	l.end()
	cnt, _ := l.figures(ctx, "restart from disk", true)
	t.Logf("restart from disk: down in %s (VMs kept), up again in %s; %d events all there, view hash %s before and %s after; "+
		"API key kept; of %d VMs %d adopted (same boot), %d stopped meanwhile marked lost, none leaked (%d VMs = %d running environments); "+
		"%d calls failed after the restart",
		downTook.Round(time.Millisecond), upTook.Round(time.Millisecond), kept2, hashBefore[:16], live[:16],
		len(boot), adopted, lost, len(vms), len(running), cnt.failed)
}

// vmsOn are the VMs host's shims run, by environment.
func (c *Cluster) vmsOn(t *testing.T, host string) map[string]bool {
	t.Helper()
	left, err := c.LeftoverVMs(context.Background())
	if err != nil {
		t.Logf("scan VMs: %v", err)
	}
	out := map[string]bool{}
	for _, v := range left {
		if v.Host == host {
			out[v.Machine.ID()] = true
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// session is a test's own MCP client of one router.
type session struct{ c *client.Client }

// newSession opens an MCP session with the router at url, as the client named name.
func newSession(t *testing.T, url, key, name string) *session {
	t.Helper()
	cl, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Start(ctx); err != nil {
		t.Fatalf("MCP session with %s: %v", url, err)
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ProtocolVersion = mcpgo.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcpgo.Implementation{Name: name, Version: "1"}
	if _, err := cl.Initialize(ctx, init); err != nil {
		t.Fatalf("MCP session with %s: %v", url, err)
	}
	return &session{c: cl}
}

func (s *session) call(t *testing.T, tool string, args map[string]any) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout(tool))
	defer cancel()
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = tool, args
	res, err := s.c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	text := ""
	for _, c := range res.Content {
		if tc, ok := c.(mcpgo.TextContent); ok {
			text += tc.Text
		}
	}
	return text, res.IsError
}

// ok makes a call that must succeed; for execute it returns stdout.
func (s *session) ok(t *testing.T, tool string, args map[string]any) string {
	t.Helper()
	text, isErr := s.call(t, tool, args)
	if isErr {
		t.Fatalf("%s %v: %s", tool, args, text)
	}
	if tool == "execute" {
		var res struct{ Stdout string }
		if err := json.Unmarshal([]byte(text), &res); err != nil {
			t.Fatal(err)
		}
		return res.Stdout
	}
	return text
}

// fails makes a call that must fail with a tool error and returns it.
func (s *session) fails(t *testing.T, tool string, args map[string]any) string {
	t.Helper()
	text, isErr := s.call(t, tool, args)
	if !isErr {
		t.Fatalf("%s %v succeeded: %s", tool, args, text)
	}
	return text
}

// state is an environment's state as get_environment says.
func (s *session) state(t *testing.T, env string) string {
	t.Helper()
	var d struct{ Status string }
	if err := json.Unmarshal([]byte(s.ok(t, "get_environment", map[string]any{"environment_id": env})), &d); err != nil {
		t.Fatal(err)
	}
	return d.Status
}

// createOn creates environments until one lands on one of hosts (placement picks the least
// loaded host, so the others are kept until then, and destroyed after) and returns it and its
// host.
func (s *session) createOn(t *testing.T, hosts ...string) (string, string) {
	t.Helper()
	var others []string
	defer func() {
		for _, env := range others {
			s.ok(t, "destroy_environment", map[string]any{"environment_id": env})
		}
	}()
	for range 6 {
		var env struct {
			ID   string `json:"environment_id"`
			Host string `json:"host"`
		}
		if err := json.Unmarshal([]byte(s.ok(t, "create_environment", map[string]any{"runtime": "shell", "memory_mib": 256})), &env); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(hosts, env.Host) {
			return env.ID, env.Host
		}
		others = append(others, env.ID)
	}
	t.Fatalf("6 creates, none placed on %v", hosts)
	return "", ""
}

// onHosts are the load's environments on one of hosts; with none there, the test session
// creates one there. It returns them, the host with the most and one environment of it.
func onHosts(t *testing.T, l *load, s *session, hosts ...string) (envs []string, host, witness string) {
	t.Helper()
	count := map[string][]string{}
	for env, h := range l.envs() {
		if slices.Contains(hosts, h) {
			count[h] = append(count[h], env)
		}
	}
	for _, h := range hosts {
		if len(count[h]) > len(count[host]) {
			host = h
		}
	}
	if host == "" {
		witness, host = s.createOn(t, hosts...)
		return []string{witness}, host, witness
	}
	return count[host], host, count[host][0]
}
