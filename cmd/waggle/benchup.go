// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/waggle-dev/waggle/events/access"
)

// benchTarget is the waggle a bench run drives: its MCP endpoint, and, when the bench started
// it (--up), its JetStream, metrics, data directory and acceleration.
type benchTarget struct {
	url, key   string
	natsURL    string // empty: the bench cannot reach the event log
	natsCreds  string // the credential for natsURL ("" when it needs none)
	metricsURL string // empty: no metrics endpoint known
	dataDir    string // empty: not started by the bench (no QEMU processes of its own to read)
	accel      string // kvm or tcg, or "" when unknown
	// stop ends a waggle up the bench started (nil otherwise).
	stop func() error
}

// upStartTimeout bounds the start of a bench's own waggle up; the first start on a machine
// builds the guest images (minutes).
const upStartTimeout = 15 * time.Minute

var (
	upReadyRE = regexp.MustCompile(`^waggle is up: JetStream at (\S+),`)
	accelRE   = regexp.MustCompile(`acceleration (kvm|tcg)`)
)

// startBenchUp runs `waggle up` (this binary) in a new temporary data directory on free
// loopback ports, with the extra flags, and returns it once it is up. Its stderr (progress and
// logs) goes to bench-up.log in the data directory and, when it fails to start, into the error.
func startBenchUp(ctx context.Context, o benchOptions, extra ...string) (*benchTarget, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// A short directory: the VM layer puts unix sockets in it (108-byte path limit). Each VM's
	// QEMU runs as a uid of its own and must traverse it.
	dir, err := os.MkdirTemp("", "wbench")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	logPath := filepath.Join(dir, "bench-up.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := append([]string{"up", "--data-dir", dir, "--cache-dir", o.cacheDir, "--accel", o.accel,
		"--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--max-envs-per-tenant", "0", "--max-calls-per-tenant", "0",
		"--log-level", "warn"}, extra...)
	cmd := exec.Command(self, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, errors.Join(err, logFile.Close(), os.RemoveAll(dir))
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, errors.Join(err, logFile.Close(), os.RemoveAll(dir))
	}
	if err := cmd.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start waggle up: %w", err), logFile.Close(), os.RemoveAll(dir))
	}
	// The admin's credential: the events scenario appends every event type.
	t := &benchTarget{dataDir: dir, natsCreds: filepath.Join(credsDir(dir), access.Role{Kind: access.Admin}.CredsFile())}
	accel := make(chan string, 1)
	logged := make(chan struct{})
	go func() { // stderr into the log, noting the acceleration the VM layer settled on
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if m := accelRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case accel <- m[1]:
				default:
				}
			}
		}
	}()
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		<-logged
		exited <- cmd.Wait()
		logFile.Close()
	}()
	t.stop = func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		var err error
		select {
		case err = <-exited:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			err = fmt.Errorf("waggle up did not stop within 90s of SIGINT: %w", <-exited)
		}
		if err != nil {
			// Its log goes with the directory: keep the end of it in the error.
			err = fmt.Errorf("waggle up: %w; last lines of its output:\n%s", err, tail(logPath, 20))
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	fail := func(err error) (*benchTarget, error) {
		last := tail(logPath, 20)
		_ = t.stop()
		return nil, fmt.Errorf("%w\nlast lines of waggle up's output:\n%s", err, last)
	}
	timeout := time.After(upStartTimeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return fail(errors.New("waggle up ended before it was up"))
			}
			switch m := upReadyRE.FindStringSubmatch(line); {
			case m != nil:
				t.natsURL = m[1]
			case strings.HasPrefix(line, "MCP: ") && t.url == "":
				t.url = strings.TrimPrefix(line, "MCP: ")
			case strings.HasPrefix(line, "Metrics: "):
				t.metricsURL = strings.TrimPrefix(line, "Metrics: ")
			case strings.HasPrefix(line, "API key (Authorization: Bearer ...): "):
				t.key = strings.TrimPrefix(line, "API key (Authorization: Bearer ...): ")
			case strings.HasPrefix(line, "Ctrl-C stops everything"):
				go func() { // keep draining
					for range lines {
					}
				}()
				select {
				case t.accel = <-accel:
				default:
				}
				return t, nil
			}
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-timeout:
			return fail(fmt.Errorf("waggle up not up within %s", upStartTimeout))
		}
	}
}

// connectNATS connects to the target's NATS with its credential.
func (t *benchTarget) connectNATS() (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("waggle-bench")}
	if t.natsCreds != "" {
		co, err := access.ConnectOptions(t.natsCreds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, co...)
	}
	nc, err := nats.Connect(t.natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", t.natsURL, err)
	}
	return nc, nil
}

// tail is the last n lines of a file, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return "  " + strings.Join(lines[max(0, len(lines)-n):], "\n  ")
}

// scrapeGauge reads one series from a metrics endpoint: the first line of metric name whose
// labels contain every one of labels (`key="value"`). It reports false when there is none.
func scrapeGauge(ctx context.Context, url, name string, labels ...string) (float64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		return v, err == nil, err
	}
	return 0, false, sc.Err()
}

// benchMachine describes the machine a bench ran on.
type benchMachine struct {
	Accel         string `json:"accel"` // kvm, tcg or unknown
	Cores         int    `json:"cores"`
	CPU           string `json:"cpu,omitempty"`
	MemoryMiB     int64  `json:"memory_mib"`
	Kernel        string `json:"kernel,omitempty"`
	WaggleVersion string `json:"waggle_version"`
	GoVersion     string `json:"go_version"`
	QEMUVersion   string `json:"qemu_version,omitempty"`
	// Where says whether the numbers describe this machine's own waggle (--up) or a remote
	// one seen from this machine (--url).
	Where string `json:"where"`
}

// thisMachine reads what the bench machine is.
func thisMachine(accel, where string) benchMachine {
	m := benchMachine{Accel: accel, Cores: runtime.NumCPU(), WaggleVersion: version, GoVersion: runtime.Version(), Where: where}
	if m.Accel == "" {
		m.Accel = "unknown"
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryMiB = kib >> 10
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if out, err := exec.Command("qemu-system-x86_64", "--version").Output(); err == nil {
		first, _, _ := strings.Cut(string(out), "\n")
		m.QEMUVersion = strings.TrimPrefix(first, "QEMU emulator version ")
	}
	return m
}

// vmMemory is the host memory of VM processes: resident (RSS) and proportional (PSS, shared
// pages split among their users) set sizes, summed.
type vmMemory struct {
	Processes int   `json:"processes"`
	RSSKiB    int64 `json:"rss_kib"`
	PSSKiB    int64 `json:"pss_kib"`
}

// qemuPIDs lists the qemu-system processes whose command line mentions dir (a data directory:
// every VM's files live in it).
func qemuPIDs(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte("qemu-system")) && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// qemuMemory sums /proc/PID/smaps_rollup over the QEMU processes of dir.
func qemuMemory(dir string) (vmMemory, error) {
	var m vmMemory
	for _, pid := range qemuPIDs(dir) {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			continue // the process ended meanwhile
		}
		rss, pss, err := parseSmapsRollup(f)
		f.Close()
		if err != nil {
			return vmMemory{}, fmt.Errorf("smaps_rollup of process %d: %w", pid, err)
		}
		m.Processes++
		m.RSSKiB += rss
		m.PSSKiB += pss
	}
	return m, nil
}

// parseSmapsRollup reads the Rss and Pss lines (in kB) of a smaps_rollup file.
func parseSmapsRollup(r io.Reader) (rss, pss int64, err error) {
	sc := bufio.NewScanner(r)
	found := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[2] != "kB" {
			continue
		}
		var dst *int64
		switch f[0] {
		case "Rss:":
			dst = &rss
		case "Pss:":
			dst = &pss
		default:
			continue
		}
		if *dst, err = strconv.ParseInt(f[1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("%s %q: %w", f[0], f[1], err)
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found < 2 {
		return 0, 0, errors.New("no Rss and Pss lines")
	}
	return rss, pss, nil
}
