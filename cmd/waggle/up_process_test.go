// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/events/access"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// upProc is a `waggle up` running as a separate process.
type upProc struct {
	cmd        *exec.Cmd
	dataDir    string
	urls       []string // MCP URL of each router
	key        string   // the first API key
	natsURL    string
	metricsURL string        // with --metrics-listen
	logPath    string        // its stderr
	exited     chan struct{} // closed when the process has ended
	waitErr    error         // set before exited is closed
}

// creds is the path of the credential `waggle up` wrote for a role (its file name without
// .creds: admin, operator, router, projector, hostagent-host1, ...).
func (p *upProc) creds(role string) string {
	return filepath.Join(p.dataDir, "creds", role+".creds")
}

// openLog binds the event log of the running `waggle up` with the operator's (read-only)
// credential.
func (p *upProc) openLog(ctx context.Context, t *testing.T) *events.Log {
	t.Helper()
	opts, err := access.ConnectOptions(p.creds("operator"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(p.natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l, err := events.BindLog(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// upSetup says how to start a `waggle up`.
type upSetup struct {
	// dataDir reuses the data directory of an earlier run; empty makes a new one. The image and
	// kernel cache is always the one the VM tests share.
	dataDir        string
	hosts, routers int
	noAuth         bool     // --no-auth: no API key
	extra          []string // more flags
}

// startUp runs `waggle up` as set up and waits until it is up. When the test ends it is
// stopped with SIGINT (SIGKILL after a timeout) and the test fails if a QEMU process of its
// data directory is left.
func startUp(t *testing.T, setup upSetup) *upProc {
	t.Helper()
	bin := builtWaggle(t)
	dataDir := setup.dataDir
	if dataDir == "" {
		// A short directory: the VM layer puts unix sockets in it (108-byte path limit).
		var err error
		if dataDir, err = os.MkdirTemp("", "wup"); err != nil {
			t.Fatal(err)
		}
		// QEMU runs as an unprivileged uid of its VM's own: it must reach the VM directories.
		if err := os.Chmod(dataDir, 0o711); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dataDir) })
	}
	routers := setup.routers
	routerPort := freeConsecutivePorts(t, routers)
	natsPort := freeConsecutivePorts(t, 1)
	gossipPort := freeConsecutivePorts(t, 1)
	args := append([]string{"up",
		"--data-dir", dataDir,
		"--cache-dir", vmtest.CacheDir(t),
		"--listen", "127.0.0.1:" + strconv.Itoa(routerPort),
		"--nats-listen", "127.0.0.1:" + strconv.Itoa(natsPort),
		"--gossip-listen", "127.0.0.1:" + strconv.Itoa(gossipPort),
		"--hosts", strconv.Itoa(setup.hosts), "--routers", strconv.Itoa(routers),
		// A small file limit keeps the too-large checks quick (32 MiB of JSON is slow under -race).
		"--max-file-bytes", strconv.Itoa(4 << 20),
	}, setup.extra...)
	if setup.noAuth {
		args = append(args, "--no-auth")
	}
	p := &upProc{dataDir: dataDir, logPath: filepath.Join(t.TempDir(), "up.log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = upEnv()
	p.cmd.Stderr = logFile
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logFile, "stdout:", sc.Text())
			lines <- sc.Text()
		}
		close(lines)
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := p.stop(t, 60*time.Second); err != nil {
			t.Logf("waggle up ended: %v", err)
		}
		p.checkNoQEMU(t)
		if t.Failed() {
			p.dumpLog(t)
		}
	})

	deadline := time.After(5 * time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.exited
				t.Fatalf("waggle up ended before it was up: %v", p.waitErr)
			}
			switch {
			case strings.HasPrefix(line, "MCP: "):
				p.urls = append(p.urls, strings.TrimPrefix(line, "MCP: "))
			case strings.HasPrefix(line, "Metrics: "):
				p.metricsURL = strings.TrimPrefix(line, "Metrics: ")
			case strings.HasPrefix(line, "API key (Authorization: Bearer ...): "):
				p.key = strings.TrimPrefix(line, "API key (Authorization: Bearer ...): ")
			case strings.HasPrefix(line, "Ctrl-C stops everything"):
				// The key is printed on the first start only.
				if len(p.urls) != routers || (p.key == "") != (setup.dataDir != "" || setup.noAuth) {
					t.Fatalf("waggle up printed %d MCP URLs (want %d) and key %q", len(p.urls), routers, p.key)
				}
				p.natsURL = "nats://127.0.0.1:" + strconv.Itoa(natsPort)
				go func() { // keep draining stdout
					for range lines {
					}
				}()
				return p
			}
		case <-deadline:
			t.Fatal("waggle up not up within 5 minutes")
		}
	}
}

// upEnv is the environment of a waggle process the tests start: without WAGGLE_ settings
// of the outer environment, which would override the flags the test leaves out.
func upEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WAGGLE_") {
			env = append(env, kv)
		}
	}
	return env
}

// stop sends SIGINT and waits for the process to end, killing it after timeout; it returns
// how it ended (nil: exit status 0). It can be called more than once.
func (p *upProc) stop(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("interrupt waggle up: %v", err)
	}
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(timeout):
	}
	t.Errorf("waggle up did not stop within %s of SIGINT; killing it", timeout)
	_ = p.cmd.Process.Kill()
	<-p.exited
	return p.waitErr
}

// checkNoQEMU fails the test if a QEMU process of this data directory is still running (after
// a short grace period) and kills what is left, so a failure does not leak VMs.
func (p *upProc) checkNoQEMU(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := qemuPIDs(p.dataDir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("QEMU processes of %s still running after waggle up ended: %v", p.dataDir, left)
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpLog logs the end of waggle up's output.
func (p *upProc) dumpLog(t *testing.T) {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("waggle up log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	t.Logf("last lines of waggle up's output (%s):\n%s", p.logPath, strings.Join(lines[max(0, len(lines)-150):], "\n"))
}

// runWaggle runs the built waggle binary with args and returns its stdout, stderr and exit code.
func runWaggle(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runWaggleFor(t, 2*time.Minute, args...)
}

// runWaggleFor is runWaggle with a limit of its own: the test fails if waggle runs longer.
func runWaggleFor(t *testing.T, limit time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(builtWaggle(t), args...)
	cmd.Env = upEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		err = <-done
		t.Fatalf("waggle %v: no end within %s (%v); stderr:\n%s", args, limit, err, errb.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("waggle %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// freeConsecutivePorts finds n consecutive free loopback TCP ports and returns the first.
func freeConsecutivePorts(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		var lns []net.Listener
		first := 0
		for i := range n {
			addr := "127.0.0.1:0"
			if i > 0 {
				addr = "127.0.0.1:" + strconv.Itoa(first+i)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				break
			}
			if i == 0 {
				first = ln.Addr().(*net.TCPAddr).Port
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if len(lns) == n {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}
