// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
	"github.com/waggle-dev/waggle/projector"
)

// requireProgram returns the path of a program a test needs. Without it the test fails under
// CI=true or WAGGLE_REQUIRE_VM=1 (where `go tool task test` installed it) and is skipped
// elsewhere; install says how to get it.
func requireProgram(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s is not installed (%s)", name, install)
	if os.Getenv("CI") == "true" || os.Getenv(vmtest.RequireEnv) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// promtool checks text with `promtool ARGS...` (text on its stdin) and fails the test with
// promtool's complaints.
func promtool(t *testing.T, text string, args ...string) {
	t.Helper()
	bin := requireProgram(t, "promtool", "apt-get install prometheus, or go tool task deps")
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAlertRules: the alert rules of deploy/prometheus are valid, and their unit tests (each
// alert fires on the series it is about, and only then) pass.
func TestAlertRules(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	promtool(t, "", "check", "rules", filepath.Join(dir, "alerts.yaml"))
	promtool(t, "", "test", "rules", filepath.Join(dir, "alerts_test.yaml"))
}

// scrape fetches a metrics endpoint, checks it with `promtool check metrics` and that it has
// each of the series (a name, or a name and the start of its labels).
func scrape(t *testing.T, url string, want ...string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	for _, w := range want {
		if !bytes.Contains(body, []byte("\n"+w)) {
			t.Errorf("%s has no series %s", url, w)
		}
	}
	promtool(t, string(body), "check", "metrics")
	return string(body)
}

// Series each role's metrics must show after traffic (one per kind of metric the role has).
var (
	routerSeries = []string{`waggle_router_requests_total{result="ok",router=`, "waggle_router_request_duration_seconds_bucket",
		"waggle_router_in_flight", `waggle_router_auth_failures_total{reason="missing_key"`, "waggle_router_placement_retries_total",
		`waggle_router_host_rpc_duration_seconds_count{op="exec"`}
	hostSeries = []string{`waggle_hostagent_vms{host=`, `waggle_hostagent_boots_total{host=`, "waggle_hostagent_boot_duration_seconds_bucket",
		`waggle_hostagent_rpc_duration_seconds_count{host=`, "waggle_hostagent_rpc_in_flight", "waggle_hostagent_boots_queued",
		`waggle_hostagent_capacity_free{host=`, `waggle_hostagent_capacity_used{host=`, "waggle_hostagent_warm_pool_target",
		`waggle_hostagent_placements_total{host=`}
	projectorSeries = []string{"waggle_projector_lag_events", "waggle_projector_lag_seconds", "waggle_projector_applied_total",
		"waggle_projector_rebuilds_total", "waggle_projector_apply_delay_seconds_bucket"}
	eventSeries = []string{"waggle_events_appends_total{", "waggle_events_append_duration_seconds_bucket",
		"waggle_events_lost_ack_retries_total"}
	natsSeries = []string{`waggle_nats_stream_messages{stream="WAGGLE_EVENTS"}`, "waggle_nats_connections",
		"waggle_nats_jetstream_storage_bytes", `waggle_nats_consumer_pending_messages{consumer=`}
)

// TestOperations is an operator's view of a running `waggle up` after an agent used it:
// every role's metrics (at --metrics-listen and at the router's /metrics) pass `promtool check
// metrics`, and natscli shows the event stream, a create's events and the environment in the
// view.
func TestOperations(t *testing.T) {
	vmtest.Require(t)
	vmtest.Kernel(t)
	vmtest.Image(t, "shell")
	nats := natscli(t)
	up := startUp(t, upSetup{hosts: 1, routers: 1, extra: []string{"--metrics-listen", "127.0.0.1:0"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := agentTraffic(ctx, t, up.urls[0], up.key)

	t.Run("metrics", func(t *testing.T) {
		if up.metricsURL == "" {
			t.Fatal("waggle up --metrics-listen printed no Metrics: line")
		}
		all := concat(routerSeries, hostSeries, projectorSeries, eventSeries, natsSeries)
		scrape(t, up.metricsURL, all...)
		// Each router serves them too, at its own /metrics.
		scrape(t, strings.TrimSuffix(up.urls[0], "/mcp")+"/metrics", all...)
	})
	t.Run("natscli", func(t *testing.T) {
		checkNatsCLI(t, nats, up.natsURL, up.creds("operator"), "host1", env)
	})
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// agentTraffic does what an agent does through the MCP endpoint: a failed call, a create and
// an execute. It returns the environment, left running.
func agentTraffic(ctx context.Context, t *testing.T, url, key string) string {
	t.Helper()
	// One call without the key, so the auth failure series have a sample.
	resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := dialT(ctx, t, url, key, newCallLog())
	var env envOut
	s.ok("create_environment", map[string]any{"runtime": "shell"}, &env)
	var out execOut
	s.ok("execute", map[string]any{"environment_id": env.ID, "code": "echo ops"}, &out)
	if out.Stdout != "ops\n" {
		t.Fatalf("execute: %+v", out)
	}
	return env.ID
}

// natscli is the nats CLI pinned in tools/natscli/go.mod, built on first use.
func natscli(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "-modfile="+filepath.Join(repoRoot(t), "tools", "natscli", "go.mod"), "-n", "nats")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("build natscli: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("build natscli: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// runNatsCLI runs natscli against server (with the credentials file creds unless empty) and
// returns its output. With tty set it runs on a pseudo-terminal, as an operator's shell has
// (`nats stream view` pages and refuses to run without one), made by script(1).
func runNatsCLI(t *testing.T, tty bool, nats, server, creds string, args ...string) string {
	t.Helper()
	full := append([]string{nats, "--server", server}, args...)
	if creds != "" {
		// A role may subscribe only under its own inbox prefix (replies meant for another role
		// stay unreadable), so natscli uses the credential's.
		inbox, err := access.CredsInboxPrefix(creds)
		if err != nil {
			t.Fatal(err)
		}
		full = append(full, "--creds", creds, "--inbox-prefix", inbox)
	}
	if tty {
		quoted := make([]string, len(full))
		for i, a := range full {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		full = []string{requireProgram(t, "script", "apt-get install bsdutils"), "--quiet", "--return", "--command", strings.Join(quoted, " "), "/dev/null"}
	}
	cmd := exec.Command(full[0], full[1:]...)
	// natscli keeps contexts under $HOME/.config: a fresh one, so nothing of the machine's
	// applies.
	cmd.Env = append(upEnv(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("$ nats %s\n%s", strings.Join(args, " "), out)
	return string(out)
}

// checkNatsCLI shows what docs/OPERATIONS.md tells operators to run: the stream's info, a
// create's events, and the environment in the view.
func checkNatsCLI(t *testing.T, nats, server, creds, host, env string) {
	info := runNatsCLI(t, false, nats, server, creds, "stream", "info", events.StreamName)
	for _, want := range []string{events.StreamName, "waggle.env.>", "Allows Msg Delete: false", "Allows Purge: false", "Messages:"} {
		if !strings.Contains(info, want) {
			t.Errorf("nats stream info lacks %q", want)
		}
	}
	view := runNatsCLI(t, true, nats, server, creds, "stream", "view", events.StreamName, "--subject", events.EnvAggregate(host, env))
	for _, typ := range []string{events.EnvRequested, events.EnvPlaced, events.EnvStarting, events.EnvStarted, events.EnvExec} {
		if !strings.Contains(view, events.EnvSubject(host, env, typ)) {
			t.Errorf("nats stream view of %s lacks its %s event", env, typ)
		}
	}
	kv := runNatsCLI(t, false, nats, server, creds, "kv", "get", events.EnvsBucket, env, "--raw")
	for _, want := range []string{`"id":"` + env + `"`, `"state":"running"`} {
		if !strings.Contains(kv, want) {
			t.Errorf("nats kv get %s %s lacks %s", events.EnvsBucket, env, want)
		}
	}
}

// TestRoleMetrics runs every role as its own process, each with its own credential and its
// metrics endpoint (--metrics-listen, the router's /metrics), and checks each with promtool
// after an agent's traffic.
func TestRoleMetrics(t *testing.T) {
	vmtest.Require(t)
	vmtest.Kernel(t)
	vmtest.Image(t, "shell")
	requireProgram(t, "promtool", "apt-get install prometheus, or go tool task deps")
	port := func() string { return "127.0.0.1:" + strconv.Itoa(freeConsecutivePorts(t, 1)) }
	natsListen, natsMetrics, projMetrics, hostMetrics, routerListen := port(), port(), port(), port(), port()
	natsURL := "nats://" + natsListen
	// A standalone node makes the cluster's credentials in its data directory on first start.
	natsDir := t.TempDir()
	creds := filepath.Join(natsDir, "creds")
	startRole(t, "", "nats", "--data-dir", natsDir, "--listen", natsListen, "--metrics-listen", natsMetrics)
	waitForStream(t, natsURL, filepath.Join(creds, "operator.creds"))
	if out, err := waggle(t, "creds", "create", "--dir", creds, "--role", "hostagent", "--host-id", "h1"); err != nil {
		t.Fatalf("waggle creds create: %v: %s", err, out)
	}
	startRole(t, "", "projector", "--nats-url", natsURL, "--name", "default", "--nats-creds", filepath.Join(creds, "projector.creds"),
		"--metrics-listen", projMetrics)
	hostDir, err := os.MkdirTemp("", "wha") // short: the VM layer puts unix sockets in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostDir) })
	if err := os.Chmod(hostDir, 0o711); err != nil { // each VM's QEMU runs as a uid of its own
		t.Fatal(err)
	}
	startRole(t, hostDir, "hostagent", "--host-id", "h1", "--nats-url", natsURL, "--nats-creds", filepath.Join(creds, "hostagent-h1.creds"),
		"--data-dir", hostDir, "--cache-dir", vmtest.CacheDir(t), "--bind", port(), "--insecure-gossip", "--metrics-listen", hostMetrics,
		"--capacity-memory", "2048", "--capacity-cpus", "4", "--max-environments", "4")
	startRole(t, "", "router", "--nats-url", natsURL, "--nats-creds", filepath.Join(creds, "router.creds"),
		"--listen", routerListen, "--no-auth")
	url := "http://" + routerListen + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitHostLive(ctx, t, natsURL, filepath.Join(creds, "operator.creds"))
	agentTraffic(ctx, t, url, "")

	scrape(t, "http://"+routerListen+"/metrics", concat(routerSeries, eventSeries)...)
	scrape(t, "http://"+hostMetrics+"/metrics", concat(hostSeries, eventSeries)...)
	scrape(t, "http://"+projMetrics+"/metrics", concat(projectorSeries, eventSeries)...)
	scrape(t, "http://"+natsMetrics+"/metrics", natsSeries...)
}

// waitHostLive waits until the view at natsURL shows a live host, reading it with the
// credential at creds.
func waitHostLive(ctx context.Context, t *testing.T, natsURL, creds string) {
	t.Helper()
	opts, err := access.ConnectOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	view, err := projector.NewReader(js)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		hosts, _ := view.Hosts(ctx)
		for _, h := range hosts {
			if h.State == projector.HostLive {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live host in the view within a minute: %+v", hosts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startRole runs `waggle ARGS...` as a separate process until the test ends, then stops it with
// SIGINT (SIGKILL after a minute). With vmDir set, no QEMU process of that directory may be
// left. Its stderr is logged when the test fails.
func startRole(t *testing.T, vmDir string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), args[0]+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(builtWaggle(t), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = upEnv(), logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		var err error
		select {
		case err = <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			err = fmt.Errorf("no exit within a minute of SIGINT: %w", <-exited)
		}
		if err != nil {
			t.Errorf("waggle %s: %v", args[0], err)
		}
		if vmDir != "" {
			(&upProc{dataDir: vmDir}).checkNoQEMU(t)
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("waggle %s output:\n%s", args[0], out)
		}
	})
}

// TestMetricsListenBadAddress: a metrics address that cannot be bound is refused at start,
// naming the flag.
func TestMetricsListenBadAddress(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1:99999"} {
		_, stderr, code := runWaggle(t, "nats", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-listen", addr)
		if code == 0 || !strings.Contains(stderr, "--metrics-listen "+addr) {
			t.Errorf("waggle nats --metrics-listen %s: exit code %d, stderr %q", addr, code, stderr)
		}
	}
}

// TestMetricsServer: the metrics listener serves GET /metrics and nothing else, and stops
// with its context.
func TestMetricsServer(t *testing.T) {
	reg := newRegistry()
	ms, err := listenMetrics("127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ms.Serve(ctx) }()
	base := strings.TrimSuffix(ms.URL(), "/metrics")
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && !bytes.Contains(body, []byte("process_cpu_seconds_total")) {
			t.Errorf("GET /metrics lacks the process metrics:\n%s", body)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after its context ended: %v", err)
	}
}
