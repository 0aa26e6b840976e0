// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/waggle-dev/waggle/internal/progress"
)

// stage runs one named stage of an image build through p (see progress.Reporter.Stage); its
// error names the image and the stage.
func stage(p *progress.Reporter, image, name, what string, run func() (summary string, err error)) error {
	if err := p.Stage(image, name, what, run); err != nil {
		return fmt.Errorf("image %s: %s: %w", image, name, err)
	}
	return nil
}

// logTail is how many lines of a failed command's output its error carries.
const logTail = 15

// run runs a command in its own process group (killed as a whole when ctx ends), appends its
// combined output to logPath, and passes each output line to onLine if not nil. A failure carries
// the tail of the output.
func run(ctx context.Context, logPath string, env []string, onLine func(string), name string, args ...string) error {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s %s\n", name, strings.Join(args, " "))

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw

	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if tail = append(tail, line); len(tail) > logTail {
				tail = tail[1:]
			}
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr) // a line over 1 MiB: keep draining so the command never blocks
	}()
	err = cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s: %w", name, errors.Join(ctxErr, err))
		}
		return fmt.Errorf("%s: %w; last lines:\n  %s", name, err, strings.Join(tail, "\n  "))
	}
	return nil
}

// buildEnv is the environment of the build tools: nothing from the caller's environment leaks
// into an image except proxy settings.
func buildEnv() []string {
	env := []string{
		"PATH=" + defaultPath,
		"LC_ALL=C.UTF-8",
		"LANG=C.UTF-8",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
		"HOME=/root",
	}
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
