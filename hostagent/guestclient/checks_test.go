// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package guestclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
)

// guestCheck is one behaviour every guest must show, whether its SSH server runs in the test
// process or in a real VM. dir is a writable scratch directory in the guest. Checks use only
// shell builtins and the busybox applets of vmtest's smallest image (cat, head, dd, sleep, true,
// false, mkdir), so they run on every guest image.
type guestCheck struct {
	name string
	run  func(t *testing.T, c *guestclient.Client, dir string)
}

func guestChecks() []guestCheck {
	return []guestCheck{
		{"StdoutStderrSeparated", checkSeparation},
		{"ExitCodes", checkExitCodes},
		{"TimeoutKillsProcessGroup", checkTimeout},
		{"ContextCancelKills", checkContextCancel},
		{"BackgroundProcessKilledAfterExit", checkBackground},
		{"OutputCapped", checkOutputCap},
		{"OutputStreamed", checkOutputStreamed},
		{"StdinEnvDir", checkStdinEnvDir},
		{"ArgvIsNotShellParsed", checkArgv},
		{"ProgramInOneSpawn", checkProgram},
		{"BinaryFileRoundTrip", checkBinaryFile},
		{"FileErrors", checkFileErrors},
		{"PathWithQuotesAndSpaces", checkQuotedPath},
		{"ListFiles", checkListFiles},
		{"ConcurrentExecs", checkConcurrent},
	}
}

func mustExec(t *testing.T, c *guestclient.Client, req guestclient.ExecRequest) guestclient.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := c.Exec(ctx, req)
	if err != nil {
		t.Fatalf("Exec(%q %q): %v", req.Argv, req.Command, err)
	}
	return res
}

func checkSeparation(t *testing.T, c *guestclient.Client, _ string) {
	const n = 10000
	res := mustExec(t, c, guestclient.ExecRequest{
		Command: fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo out$i; echo err$i >&2; i=$((i+1)); done`, n),
	})
	if res.ExitCode != 0 || res.Truncated {
		t.Fatalf("exit %d truncated %v", res.ExitCode, res.Truncated)
	}
	for _, s := range []struct {
		name, prefix string
		data         []byte
	}{{"stdout", "out", res.Stdout}, {"stderr", "err", res.Stderr}} {
		lines := strings.Split(strings.TrimSuffix(string(s.data), "\n"), "\n")
		if len(lines) != n {
			t.Fatalf("%s: %d lines, want %d", s.name, len(lines), n)
		}
		for i, l := range lines {
			if want := s.prefix + strconv.Itoa(i); l != want {
				t.Fatalf("%s line %d = %q, want %q", s.name, i, l, want)
			}
		}
	}
}

func checkExitCodes(t *testing.T, c *guestclient.Client, _ string) {
	tests := []struct {
		name   string
		req    guestclient.ExecRequest
		code   int
		signal string
	}{
		{"zero", guestclient.ExecRequest{Command: "exit 0"}, 0, ""},
		{"three", guestclient.ExecRequest{Command: "exit 3"}, 3, ""},
		{"255", guestclient.ExecRequest{Command: "exit 255"}, 255, ""},
		{"argv false", guestclient.ExecRequest{Argv: []string{"false"}}, 1, ""},
		{"shell not found", guestclient.ExecRequest{Command: "no-such-command-waggle"}, 127, ""},
		{"argv not found", guestclient.ExecRequest{Argv: []string{"no-such-command-waggle"}}, 127, ""},
		{"killed by signal", guestclient.ExecRequest{Argv: []string{"sh", "-c", "kill -KILL $$"}}, 137, "KILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustExec(t, c, tt.req)
			if res.ExitCode != tt.code || res.Signal != tt.signal {
				t.Fatalf("exit %d signal %q, want %d %q (stderr %q)", res.ExitCode, res.Signal, tt.code, tt.signal, res.Stderr)
			}
		})
	}
}

// waitGone polls until no process with one of pids exists any more (zombies count as gone).
func waitGone(t *testing.T, c *guestclient.Client, pids ...string) {
	t.Helper()
	script := `for p in "$@"; do
		read -r stat 2>/dev/null < /proc/$p/stat || continue
		case "$stat" in *") Z "*) ;; *) exit 1;; esac
	done`
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := mustExec(t, c, guestclient.ExecRequest{Argv: append([]string{"sh", "-c", script, "sh"}, pids...)})
		if res.ExitCode == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still alive", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readPIDs(t *testing.T, c *guestclient.Client, files ...string) []string {
	t.Helper()
	var pids []string
	for _, f := range files {
		b, err := c.ReadFile(t.Context(), f, 100)
		if err != nil {
			t.Fatalf("read pid file: %v", err)
		}
		pids = append(pids, strings.TrimSpace(string(b)))
	}
	return pids
}

func checkTimeout(t *testing.T, c *guestclient.Client, dir string) {
	lead, bg := path.Join(dir, "lead.pid"), path.Join(dir, "bg.pid")
	res := mustExec(t, c, guestclient.ExecRequest{
		Argv:    []string{"sh", "-c", `sleep 100 & echo $! > "$2"; echo $$ > "$1"; echo started; wait`, "sh", lead, bg},
		Timeout: time.Second,
	})
	if !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("TimedOut %v exit %d, want a timeout", res.TimedOut, res.ExitCode)
	}
	if res.Duration > 5*time.Second {
		t.Fatalf("timeout took %v", res.Duration)
	}
	if string(res.Stdout) != "started\n" {
		t.Fatalf("partial stdout %q", res.Stdout)
	}
	waitGone(t, c, readPIDs(t, c, lead, bg)...)
	if res := mustExec(t, c, guestclient.ExecRequest{Command: "echo still usable"}); string(res.Stdout) != "still usable\n" {
		t.Fatalf("after timeout: %q", res.Stdout)
	}
}

func checkContextCancel(t *testing.T, c *guestclient.Client, dir string) {
	pidFile := path.Join(dir, "cancel.pid")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	res, err := c.Exec(ctx, guestclient.ExecRequest{Argv: []string{"sh", "-c", `echo $$ > "$1"; exec sleep 100`, "sh", pidFile}})
	if !errors.Is(err, context.DeadlineExceeded) || res.ExitCode != -1 {
		t.Fatalf("err %v exit %d, want deadline exceeded", err, res.ExitCode)
	}
	waitGone(t, c, readPIDs(t, c, pidFile)...)
}

func checkBackground(t *testing.T, c *guestclient.Client, dir string) {
	pidFile := path.Join(dir, "background.pid")
	// The background sleep keeps stdout open: the session ends after the guest's grace period
	// and takes the sleep with it.
	res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"sh", "-c", `sleep 100 & echo $! > "$1"; echo done`, "sh", pidFile}})
	if res.ExitCode != 0 || string(res.Stdout) != "done\n" || res.Duration > 10*time.Second {
		t.Fatalf("exit %d stdout %q after %v", res.ExitCode, res.Stdout, res.Duration)
	}
	waitGone(t, c, readPIDs(t, c, pidFile)...)
}

func checkOutputCap(t *testing.T, c *guestclient.Client, _ string) {
	const total = 20_000_000
	// dd writes in 1 MB blocks: far fewer system calls than head, which matters under TCG.
	res := mustExec(t, c, guestclient.ExecRequest{Command: "dd if=/dev/zero bs=1000000 count=20 2>/dev/null; echo done >&2"})
	if res.ExitCode != 0 || !res.Truncated || len(res.Stdout) != guestclient.DefaultMaxOutput || res.StdoutBytes != total {
		t.Fatalf("exit %d truncated %v kept %d seen %d", res.ExitCode, res.Truncated, len(res.Stdout), res.StdoutBytes)
	}
	if string(res.Stderr) != "done\n" {
		t.Fatalf("stderr %q", res.Stderr)
	}
	res = mustExec(t, c, guestclient.ExecRequest{Command: "head -c 5000 /dev/zero >&2; echo small", MaxOutput: 1000})
	if !res.Truncated || len(res.Stderr) != 1000 || res.StderrBytes != 5000 || string(res.Stdout) != "small\n" {
		t.Fatalf("stderr cap: truncated %v kept %d seen %d stdout %q", res.Truncated, len(res.Stderr), res.StderrBytes, res.Stdout)
	}
}

// streamWriter records what it is given and signals each write.
type streamWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func newStreamWriter() *streamWriter { return &streamWriter{wrote: make(chan struct{}, 1)} }

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *streamWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func checkOutputStreamed(t *testing.T, c *guestclient.Client, _ string) {
	// Output reaches the writers while the command still runs.
	stdout, stderr := newStreamWriter(), newStreamWriter()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, guestclient.ExecRequest{Command: "echo out; echo err >&2; sleep 60", Stdout: stdout, Stderr: stderr})
		done <- err
	}()
	for _, w := range []*streamWriter{stdout, stderr} {
		select {
		case <-w.wrote:
		case err := <-done:
			t.Fatalf("Exec ended before any output was streamed: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("no output streamed within a minute")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec after cancel: %v", err)
	}
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Fatalf("streamed stdout %q stderr %q", stdout, stderr)
	}
	// The writers get the capped output only.
	capped := newStreamWriter()
	res := mustExec(t, c, guestclient.ExecRequest{Command: "head -c 5000 /dev/zero", MaxOutput: 1000, Stdout: capped})
	if !res.Truncated || capped.buf.Len() != 1000 {
		t.Fatalf("capped stream: truncated %v streamed %d bytes", res.Truncated, capped.buf.Len())
	}
}

func checkStdinEnvDir(t *testing.T, c *guestclient.Client, dir string) {
	if res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"cat"}}); res.ExitCode != 0 || len(res.Stdout) != 0 {
		t.Fatalf("cat without stdin: exit %d stdout %q", res.ExitCode, res.Stdout)
	}
	in := make([]byte, 3<<20)
	rand.Read(in)
	res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"cat"}, Stdin: in, MaxOutput: -1})
	if !bytes.Equal(res.Stdout, in) {
		t.Fatalf("stdin echoed %d bytes, want %d identical", len(res.Stdout), len(in))
	}
	res = mustExec(t, c, guestclient.ExecRequest{Command: `echo "$TZ|$(pwd)"`, Env: map[string]string{"TZ": "UTC"}, Dir: dir})
	if want := "UTC|" + dir + "\n"; string(res.Stdout) != want {
		t.Fatalf("env/dir: %q, want %q", res.Stdout, want)
	}
	res = mustExec(t, c, guestclient.ExecRequest{Command: "pwd", Dir: "."})
	home := strings.TrimSuffix(string(mustExec(t, c, guestclient.ExecRequest{Command: "echo $HOME"}).Stdout), "\n")
	if string(res.Stdout) != home+"\n" {
		t.Fatalf("relative Dir: pwd %q, want %q", res.Stdout, home)
	}
	_, err := c.Exec(t.Context(), guestclient.ExecRequest{Command: "true", Env: map[string]string{"LD_PRELOAD": "/x.so"}})
	if !errors.Is(err, guestclient.ErrInvalid) {
		t.Fatalf("LD_PRELOAD: err %v, want ErrInvalid", err)
	}
	if _, err := c.Exec(t.Context(), guestclient.ExecRequest{}); !errors.Is(err, guestclient.ErrInvalid) {
		t.Fatalf("empty request: err %v, want ErrInvalid", err)
	}
}

// checkProgram runs programs the guest saves to a file: the interpreter gets its path, the
// program's commands read an empty stdin (not the rest of the program), a program larger than
// one argument may be (128 KiB) runs, and the file is gone afterwards.
func checkProgram(t *testing.T, c *guestclient.Client, dir string) {
	res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"sh"}, Program: []byte("read line; echo \"stdin:[$line]\"\nexit 4\n")})
	if res.ExitCode != 4 || string(res.Stdout) != "stdin:[]\n" {
		t.Fatalf("program: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	res = mustExec(t, c, guestclient.ExecRequest{Argv: []string{"sh"}, Program: []byte(`echo "$0"`)})
	file := strings.TrimSpace(string(res.Stdout))
	if !strings.Contains(file, "waggle-program-") {
		t.Fatalf("program file %q", file)
	}
	if res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"sh", "-c", `test -e "$1" && echo left`, "sh", file}}); len(res.Stdout) != 0 {
		t.Errorf("program file %s left behind", file)
	}
	big := strings.Repeat("x=1\n", 200<<10/4) + "echo big done\n"
	if res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"sh"}, Program: []byte(big)}); string(res.Stdout) != "big done\n" {
		t.Fatalf("%d-byte program: exit %d, stdout %q, stderr %.200q", len(big), res.ExitCode, res.Stdout, res.Stderr)
	}
	if res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"no-such-interpreter"}, Program: []byte("x")}); res.ExitCode != 127 {
		t.Errorf("missing interpreter: exit %d, stderr %q, want 127", res.ExitCode, res.Stderr)
	}
	for _, req := range []guestclient.ExecRequest{
		{Program: []byte("echo")},
		{Argv: []string{"sh"}, Program: []byte("echo"), Stdin: []byte("x")},
	} {
		if _, err := c.Exec(t.Context(), req); !errors.Is(err, guestclient.ErrInvalid) {
			t.Errorf("program request %+v: err %v, want ErrInvalid", req, err)
		}
	}
}

func checkArgv(t *testing.T, c *guestclient.Client, _ string) {
	args := []string{"a b", `it's`, `"q"`, "", "$HOME", "; rm -rf /", "ünï", "*"}
	// sh receives args as positional parameters, untouched by any shell parsing.
	res := mustExec(t, c, guestclient.ExecRequest{Argv: append([]string{"sh", "-c", `for a; do printf '[%s]' "$a"; done`, "sh"}, args...)})
	want := ""
	for _, a := range args {
		want += "[" + a + "]"
	}
	if string(res.Stdout) != want {
		t.Fatalf("argv: %q, want %q", res.Stdout, want)
	}
}

func checkBinaryFile(t *testing.T, c *guestclient.Client, dir string) {
	data := make([]byte, 5<<20)
	rand.Read(data)
	p := path.Join(dir, "bin/nested/blob.bin")
	if err := c.WriteFile(t.Context(), p, data, 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := c.ReadFile(t.Context(), p, 0)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not identical to the %d written", len(got), len(data))
	}
	list, err := c.ListFiles(t.Context(), p, false)
	if err != nil || len(list) != 1 || list[0].Mode.Perm() != 0o600 || list[0].Size != int64(len(data)) {
		t.Fatalf("ListFiles: %+v %v, want mode 0600 and %d bytes", list, err, len(data))
	}
}

func checkFileErrors(t *testing.T, c *guestclient.Client, dir string) {
	file := path.Join(dir, "errs/plain.txt")
	if err := c.WriteFile(t.Context(), file, []byte("0123456789"), 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"read missing", func() error { _, err := c.ReadFile(t.Context(), path.Join(dir, "missing.txt"), 0); return err }, guestclient.ErrNotFound},
		{"read in missing dir", func() error { _, err := c.ReadFile(t.Context(), path.Join(dir, "nodir/x"), 0); return err }, guestclient.ErrNotFound},
		{"read dir", func() error { _, err := c.ReadFile(t.Context(), dir, 0); return err }, guestclient.ErrIsDir},
		{"read too large", func() error { _, err := c.ReadFile(t.Context(), file, 9); return err }, guestclient.ErrTooLarge},
		{"read not regular", func() error { _, err := c.ReadFile(t.Context(), "/dev/null", 0); return err }, guestclient.ErrNotRegular},
		{"write onto dir", func() error { return c.WriteFile(t.Context(), dir, nil, 0) }, guestclient.ErrIsDir},
		{"write below file", func() error { return c.WriteFile(t.Context(), file+"/sub/x", nil, 0) }, guestclient.ErrNotDir},
		{"list missing", func() error { _, err := c.ListFiles(t.Context(), path.Join(dir, "missing"), false); return err }, guestclient.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
	got, err := c.ReadFile(t.Context(), file, 10)
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("read at exactly the limit: %q %v", got, err)
	}
}

func checkQuotedPath(t *testing.T, c *guestclient.Client, dir string) {
	p := path.Join(dir, `dir with spaces/it's a "quoted" $file.txt`)
	if err := c.WriteFile(t.Context(), p, []byte("quoted\n"), 0); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := c.ReadFile(t.Context(), p, 0)
	if err != nil || string(got) != "quoted\n" {
		t.Fatalf("ReadFile: %q %v", got, err)
	}
	if res := mustExec(t, c, guestclient.ExecRequest{Argv: []string{"cat", p}}); string(res.Stdout) != "quoted\n" {
		t.Fatalf("cat: %q %q", res.Stdout, res.Stderr)
	}
	list, err := c.ListFiles(t.Context(), path.Dir(p), false)
	if err != nil || len(list) != 1 || list[0].Path != p || list[0].Size != 7 {
		t.Fatalf("ListFiles: %+v %v", list, err)
	}
}

func checkListFiles(t *testing.T, c *guestclient.Client, dir string) {
	root := path.Join(dir, "tree")
	for _, f := range []string{"b.txt", "a/x.txt", "a/deep/y.txt"} {
		if err := c.WriteFile(t.Context(), path.Join(root, f), []byte(f), 0); err != nil {
			t.Fatal(err)
		}
	}
	names := func(l []guestclient.FileInfo) []string {
		var out []string
		for _, fi := range l {
			rel := strings.TrimPrefix(fi.Path, root+"/")
			if fi.IsDir {
				rel += "/"
			}
			out = append(out, rel)
		}
		sort.Strings(out)
		return out
	}
	flat, err := c.ListFiles(t.Context(), root, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(flat), []string{"a/", "b.txt"}; !slices.Equal(got, want) {
		t.Fatalf("flat: %v, want %v", got, want)
	}
	deep, err := c.ListFiles(t.Context(), root, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(deep), []string{"a/", "a/deep/", "a/deep/y.txt", "a/x.txt", "b.txt"}; !slices.Equal(got, want) {
		t.Fatalf("recursive: %v, want %v", got, want)
	}
	one, err := c.ListFiles(t.Context(), path.Join(root, "b.txt"), true)
	if err != nil || len(one) != 1 || one[0].Name != "b.txt" || one[0].Size != 5 {
		t.Fatalf("file: %+v %v", one, err)
	}
}

func checkConcurrent(t *testing.T, c *guestclient.Client, _ string) {
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			res, err := c.Exec(t.Context(), guestclient.ExecRequest{Argv: []string{"sh", "-c", "echo $1; echo e$1 >&2", "sh", strconv.Itoa(i)}})
			switch {
			case err != nil:
				errs <- err
			case string(res.Stdout) != strconv.Itoa(i)+"\n" || string(res.Stderr) != "e"+strconv.Itoa(i)+"\n":
				errs <- fmt.Errorf("exec %d: stdout %q stderr %q", i, res.Stdout, res.Stderr)
			default:
				errs <- nil
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// benchExecTrue measures the round trip of running `true` and reports its p50 and p99.
func benchExecTrue(b *testing.B, c *guestclient.Client) {
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := c.Exec(b.Context(), guestclient.ExecRequest{Argv: []string{"true"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("exec true: %v exit %d", err, res.ExitCode)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	pct := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
