// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/waggle-dev/waggle/events"
)

// The load the failure tests put on a cluster: clients that each keep an environment and call
// execute, write_file and read_file on it in a loop through their router, retrying a call on
// the other router when theirs does not answer (connection refused or broken, no reply).
//
// What counts:
//   - a call is one logical operation; its attempts are the requests sent for it (a retry is a
//     new request to the other router). A call is retried when it needed a second attempt, and
//     failed when no attempt succeeded (a tool error, or no router answered).
//   - every attempt carries a marker of its own (in the code it runs, the content it writes), so
//     its audit event is found by hash: an acknowledged attempt without its audit event is lost,
//     and an attempt with more than one audit event was applied twice. A create's attempts share
//     its idempotency key; one key starting more than one environment is a create applied twice.

// attempt is one request a load client sent.
type attempt struct {
	client   int
	op       string // create_environment, execute, write_file, read_file
	env      string // the environment it was about (create: the one it returned)
	sha      string // events.Hash of the code run or content written
	key      string // create: idempotency key
	router   int
	start    time.Time
	end      time.Time
	ok       bool   // acknowledged: a result that is no tool error
	toolErr  string // the tool error, if it was one
	transErr string // no answer from this router
}

// loadClient is one agent using the cluster.
type loadClient struct {
	id       int
	sessions []*client.Client // one per router
	prefer   int              // the router it calls first
	env      string
	host     string
	n        int // operations made, for markers and paths
	creates  int // environments created, for idempotency keys
	written  map[string]string
	// wantCreate asks it to create a new environment at its next turn (the old one is
	// destroyed once the new one runs).
	wantCreate bool
}

// load runs clients against a cluster and records every attempt.
type load struct {
	t       *testing.T
	c       *Cluster
	key     string
	clients []*loadClient

	mu       sync.Mutex
	attempts []attempt
	// calls, retried and failed count the current phase's calls.
	calls, retried, failed int
	wrongReads             int
	phaseStart             time.Time
	flying                 map[int]attempt // client -> its attempt in flight

	stop chan struct{} // closed by end
	wg   sync.WaitGroup
}

// callTimeout bounds one attempt: a create waits for a boot (slow under TCG on a busy machine).
func callTimeout(tool string) time.Duration {
	if tool == "create_environment" || tool == "destroy_environment" {
		return 4 * time.Minute
	}
	return 45 * time.Second
}

func newLoad(t *testing.T, c *Cluster, clients int) *load {
	t.Helper()
	l := &load{t: t, c: c, key: c.APIKey(), flying: map[int]attempt{}}
	for i := range clients {
		lc := &loadClient{id: i, prefer: i % len(c.RouterURLs()), written: map[string]string{}}
		l.clients = append(l.clients, lc)
	}
	l.connect(t, c)
	return l
}

// connect gives every client a new MCP session with each router of c (a cluster started
// again has new router processes, which clients reconnect to).
func (l *load) connect(t *testing.T, c *Cluster) {
	t.Helper()
	l.c = c
	for _, lc := range l.clients {
		lc.sessions = nil
		for _, u := range c.RouterURLs() {
			lc.sessions = append(lc.sessions, newSession(t, u, l.key, fmt.Sprintf("waggle-load-%d", lc.id)).c)
		}
	}
}

// begin starts a phase of test t: counts from zero and the clients run until end.
func (l *load) begin(t *testing.T) {
	l.t = t
	l.mu.Lock()
	l.calls, l.retried, l.failed, l.wrongReads, l.phaseStart = 0, 0, 0, 0, time.Now()
	l.mu.Unlock()
	l.stop = make(chan struct{})
	for _, lc := range l.clients {
		l.wg.Go(func() { l.run(lc) })
	}
}

// end stops the clients and waits for their calls in flight; it may be called again.
func (l *load) end() {
	if !l.stopped() {
		close(l.stop)
	}
	l.wg.Wait()
}

// recovery is how long after t the clients that call router r first took to get a call
// answered (by the other router; the longest of them), and how long the create with key did.
func (l *load) recovery(t time.Time, r int, key string) (first, keyed time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lc := range l.clients {
		if lc.prefer != r {
			continue
		}
		mine := time.Duration(0)
		for _, a := range l.attempts {
			if a.client == lc.id && a.ok && a.end.After(t) && (mine == 0 || a.end.Sub(t) < mine) {
				mine = a.end.Sub(t)
			}
			if a.ok && a.key == key && key != "" {
				keyed = a.end.Sub(t)
			}
		}
		first = max(first, mine)
	}
	return first, keyed
}

// retriedCreates counts the creates since t that a router did not answer and that another
// router then answered, with the same idempotency key.
func (l *load) retriedCreates(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	broken, answered := map[string]bool{}, map[string]bool{}
	for _, a := range l.attempts {
		if a.op != "create_environment" || a.end.Before(t) {
			continue
		}
		if a.transErr != "" {
			broken[a.key] = true
		}
		if a.ok {
			answered[a.key] = true
		}
	}
	n := 0
	for k := range broken {
		if answered[k] {
			n++
		}
	}
	return n
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// run is one client's loop.
func (l *load) run(lc *loadClient) {
	for !l.stopped() {
		l.mu.Lock()
		create := lc.env == "" || lc.wantCreate
		l.mu.Unlock()
		if create {
			l.create(lc)
		} else {
			l.step(lc)
		}
		select {
		case <-l.stop:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// create makes the client a new environment (with an idempotency key its retry reuses) and
// destroys its old one.
func (l *load) create(lc *loadClient) {
	lc.creates++
	key := fmt.Sprintf("load-c%d-e%d-%d", lc.id, lc.creates, l.phaseStart.UnixNano())
	var env struct {
		ID   string `json:"environment_id"`
		Host string `json:"host"`
	}
	args := map[string]any{"runtime": "shell", "name": key, "memory_mib": 256, "idempotency_key": key}
	text, ok := l.call(lc, "create_environment", func(int) (map[string]any, string, string) { return args, "", key })
	if !ok {
		time.Sleep(time.Second) // no room or no host right now: try again in a moment
		return
	}
	if err := json.Unmarshal([]byte(text), &env); err != nil {
		l.t.Errorf("client %d: create result %q: %v", lc.id, text, err)
		return
	}
	l.mu.Lock()
	old := lc.env
	lc.env, lc.host, lc.wantCreate = env.ID, env.Host, false
	lc.written = map[string]string{}
	l.mu.Unlock()
	if old != "" {
		l.call(lc, "destroy_environment", func(int) (map[string]any, string, string) {
			return map[string]any{"environment_id": old}, "", ""
		})
	}
}

// step makes one execute, one write_file and one read_file on the client's environment.
func (l *load) step(lc *loadClient) {
	lc.n++
	n := lc.n
	exec := func(try int) (map[string]any, string, string) {
		code := fmt.Sprintf("echo c%d-%d-a%d", lc.id, n, try)
		return map[string]any{"environment_id": lc.env, "code": code, "timeout_seconds": 10}, events.Hash([]byte(code)), ""
	}
	if !l.envCall(lc, "execute", exec) {
		return
	}
	path := fmt.Sprintf("/home/sandbox/c%d-%d.txt", lc.id, n%5)
	var content string
	write := func(try int) (map[string]any, string, string) {
		content = fmt.Sprintf("client %d op %d attempt %d\n", lc.id, n, try)
		return map[string]any{"environment_id": lc.env, "path": path, "content": content}, events.Hash([]byte(content)), ""
	}
	if !l.envCall(lc, "write_file", write) {
		return
	}
	lc.written[path] = content
	read := func(int) (map[string]any, string, string) {
		return map[string]any{"environment_id": lc.env, "path": path}, "", ""
	}
	text, ok := l.call(lc, "read_file", read)
	if !ok {
		l.dropIfGone(lc, text)
		return
	}
	var got struct{ Content string }
	if err := json.Unmarshal([]byte(text), &got); err != nil || got.Content != lc.written[path] {
		l.mu.Lock()
		l.wrongReads++
		l.mu.Unlock()
		l.t.Errorf("client %d: read %s of %s: %q, wrote %q (%v)", lc.id, path, lc.env, got.Content, lc.written[path], err)
	}
}

// envCall makes a call on the client's environment; a failure that says the environment is
// gone makes the client create another.
func (l *load) envCall(lc *loadClient, tool string, build func(try int) (map[string]any, string, string)) bool {
	text, ok := l.call(lc, tool, build)
	if !ok {
		l.dropIfGone(lc, text)
	}
	return ok
}

// dropIfGone makes the client give up its environment after an error that says it cannot be
// reached any more (not running, lost, its host not answering).
func (l *load) dropIfGone(lc *loadClient, msg string) {
	for _, s := range []string{"is not running", "not answering", "did not answer", "no router answered"} {
		if strings.Contains(msg, s) {
			l.mu.Lock()
			lc.env = ""
			l.mu.Unlock()
			return
		}
	}
}

// call makes one call: on the client's router, then (if that one did not answer) on the other.
// build gives each attempt's arguments, the hash that marks it in the audit trail and the
// idempotency key. It returns the result text (or the error) and whether it succeeded.
func (l *load) call(lc *loadClient, tool string, build func(try int) (map[string]any, string, string)) (string, bool) {
	routers := len(lc.sessions)
	var last string
	for try := range routers {
		r := (lc.prefer + try) % routers
		args, sha, key := build(try)
		a := attempt{client: lc.id, op: tool, sha: sha, key: key, router: r, start: time.Now()}
		if env, ok := args["environment_id"].(string); ok {
			a.env = env
		}
		l.mu.Lock()
		l.flying[lc.id] = a
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout(tool))
		req := mcpgo.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = tool, args
		res, err := lc.sessions[r].CallTool(ctx, req)
		cancel()
		a.end = time.Now()
		l.mu.Lock()
		delete(l.flying, lc.id)
		l.mu.Unlock()
		switch {
		case err != nil:
			a.transErr = err.Error()
			last = fmt.Sprintf("router%d: %v", r+1, err)
		default:
			text := ""
			for _, c := range res.Content {
				if tc, ok := c.(mcpgo.TextContent); ok {
					text += tc.Text
				}
			}
			if res.IsError {
				a.toolErr = text
			} else {
				a.ok = true
				if tool == "create_environment" {
					var env struct {
						ID string `json:"environment_id"`
					}
					_ = json.Unmarshal([]byte(text), &env)
					a.env = env.ID
				}
			}
			l.record(a, try > 0, !a.ok)
			return text, a.ok
		}
		l.mu.Lock()
		l.attempts = append(l.attempts, a)
		l.mu.Unlock()
	}
	l.record(attempt{}, routers > 1, true)
	return "no router answered: " + last, false
}

// record counts a call that ended (with attempt a, unless it is zero).
func (l *load) record(a attempt, retried, failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !a.start.IsZero() {
		l.attempts = append(l.attempts, a)
	}
	l.calls++
	if retried {
		l.retried++
	}
	if failed {
		l.failed++
	}
}

// okSince counts each client's acknowledged execute calls that started after t.
func (l *load) okSince(t time.Time) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[int]int{}
	for _, a := range l.attempts {
		if a.ok && a.op == "execute" && a.start.After(t) {
			n[a.client]++
		}
	}
	return n
}

// waitCalls waits until every client has made n acknowledged execute calls since t.
func (l *load) waitCalls(t time.Time, n int, timeout time.Duration) {
	l.t.Helper()
	waitUntil(l.t, timeout, fmt.Sprintf("every load client making %d execute calls", n), func() (bool, string) {
		got := l.okSince(t)
		for _, lc := range l.clients {
			if got[lc.id] < n {
				return false, fmt.Sprintf("client %d made %d (calls %d, failed %d)", lc.id, got[lc.id], l.counts().calls, l.counts().failed)
			}
		}
		return true, ""
	})
}

// counts are the current phase's counters.
type counts struct{ calls, retried, failed, wrongReads int }

func (l *load) counts() counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return counts{l.calls, l.retried, l.failed, l.wrongReads}
}

// envs are the clients' current environments and their hosts.
func (l *load) envs() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for _, lc := range l.clients {
		if lc.env != "" {
			out[lc.env] = lc.host
		}
	}
	return out
}

// requestCreates makes every client create a new environment at its next turn.
func (l *load) requestCreates() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lc := range l.clients {
		lc.wantCreate = true
	}
}

// inFlight is the attempt of op on router r in flight longest (zero when none is).
func (l *load) inFlight(op string, r int) attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var oldest attempt
	for _, a := range l.flying {
		if a.op == op && a.router == r && (oldest.start.IsZero() || a.start.Before(oldest.start)) {
			oldest = a
		}
	}
	return oldest
}

// audit is what the audit trail says about the load's attempts.
type audit struct {
	acked, lost, twice int
	// keys is how many idempotency keys were used; keysTwice those that started more than one
	// environment.
	keys, keysTwice int
	problems        []string
}

// check reads every environment the load used from the log and matches its audit events
// against the attempts.
func (l *load) check(ctx context.Context) audit {
	l.mu.Lock()
	attempts := append([]attempt(nil), l.attempts...)
	l.mu.Unlock()
	log := l.c.Log()
	count := map[string]int{} // sha -> audit events (execute and write_file)
	envs := map[string]bool{}
	for _, a := range attempts {
		if a.env != "" {
			envs[a.env] = true
		}
	}
	var res audit
	for env := range envs {
		evs, _, err := log.Load(ctx, events.EnvAggregate("*", env))
		if err != nil {
			res.problems = append(res.problems, fmt.Sprintf("load %s: %v", env, err))
			continue
		}
		for _, ev := range evs {
			switch ev.Type {
			case events.EnvExec:
				var d events.Exec
				if ev.DecodeData(&d) == nil {
					count[d.CodeSHA256]++
				}
			case events.EnvFileWritten:
				var d events.File
				if ev.DecodeData(&d) == nil {
					count[d.SHA256]++
				}
			}
		}
	}
	for _, a := range attempts {
		if a.sha == "" {
			continue
		}
		n := count[a.sha]
		if a.ok {
			res.acked++
			if n == 0 {
				res.lost++
				res.problems = append(res.problems, fmt.Sprintf("acknowledged %s on %s (client %d, router%d, %s) has no audit event",
					a.op, a.env, a.client, a.router+1, a.start.Format("15:04:05.000")))
			}
		}
		if n > 1 {
			res.twice++
			res.problems = append(res.problems, fmt.Sprintf("%s on %s (client %d) has %d audit events", a.op, a.env, a.client, n))
		}
	}
	// Creates: each key's environments that were started, by name (the load names each
	// environment after its key).
	started := map[string]map[string]bool{} // name -> envs started
	names := map[string]string{}            // env -> name
	_ = log.Scan(ctx, events.EnvSubject("*", "*", events.EnvRequested), 0, func(ev *events.Event) error {
		var d events.Requested
		if ev.DecodeData(&d) == nil && strings.HasPrefix(d.Name, "load-") {
			names[ev.Env] = d.Name
		}
		return nil
	})
	_ = log.Scan(ctx, events.EnvSubject("*", "*", events.EnvStarted), 0, func(ev *events.Event) error {
		if name, ok := names[ev.Env]; ok {
			if started[name] == nil {
				started[name] = map[string]bool{}
			}
			started[name][ev.Env] = true
		}
		return nil
	})
	keys := map[string]string{} // key -> env an acknowledged create returned
	for _, a := range attempts {
		if a.op != "create_environment" {
			continue
		}
		if _, seen := keys[a.key]; !seen {
			keys[a.key] = ""
		}
		if a.ok {
			if prev := keys[a.key]; prev != "" && prev != a.env {
				res.problems = append(res.problems, fmt.Sprintf("key %s returned %s and %s", a.key, prev, a.env))
				res.keysTwice++
			}
			keys[a.key] = a.env
			if !started[a.key][a.env] {
				res.lost++
				res.problems = append(res.problems, fmt.Sprintf("acknowledged create %s (key %s) has no started event", a.env, a.key))
			}
		}
	}
	res.keys = len(keys)
	for key := range keys {
		if len(started[key]) > 1 {
			res.keysTwice++
			res.problems = append(res.problems, fmt.Sprintf("key %s started %d environments", key, len(started[key])))
		}
	}
	return res
}

// figures logs and checks the phase's counts and the whole audit: nothing lost, nothing
// applied twice, every read saw what was written; failures are allowed only when allowFailed.
func (l *load) figures(ctx context.Context, name string, allowFailed bool) (counts, audit) {
	l.t.Helper()
	c := l.counts()
	a := l.check(ctx)
	l.t.Logf("%s: calls %d, failed %d, retried %d; audit: acknowledged attempts %d, events lost %d, applied twice %d; "+
		"creates: %d idempotency keys, %d started more than one environment; wrong reads %d",
		name, c.calls, c.failed, c.retried, a.acked, a.lost, a.twice, a.keys, a.keysTwice, c.wrongReads)
	for _, p := range a.problems {
		l.t.Errorf("%s: %s", name, p)
	}
	if a.lost != 0 || a.twice != 0 || a.keysTwice != 0 || c.wrongReads != 0 {
		l.t.Errorf("%s: events lost %d, applied twice %d, keys with two environments %d, wrong reads %d: want all 0", name, a.lost, a.twice, a.keysTwice, c.wrongReads)
	}
	if c.failed != 0 {
		if allowFailed {
			l.t.Logf("%s: the failed calls:\n%s", name, strings.Join(l.failures(), "\n"))
		} else {
			l.t.Errorf("%s: %d calls failed, want 0:\n%s", name, c.failed, strings.Join(l.failures(), "\n"))
		}
	}
	return c, a
}

// failures describes the failed attempts of the current phase.
func (l *load) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, a := range l.attempts {
		if a.start.Before(l.phaseStart) || a.ok {
			continue
		}
		out = append(out, fmt.Sprintf("  %s client %d router%d %s: %s%s", a.start.Format("15:04:05.000"), a.client, a.router+1, a.op, a.toolErr, a.transErr))
	}
	return out
}

// waitUntil polls cond until it holds or timeout passes; what says what is waited for, and
// cond's second result what it saw last.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
