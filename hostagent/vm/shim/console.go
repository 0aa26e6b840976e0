// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"bytes"
	"os"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
)

// maxConsoleLog bounds console.log; later output is dropped.
const maxConsoleLog = 4 << 20

// console receives the guest's serial output: it appends it to console.log, remembers when
// the guest last printed, and reports marker lines (see wire.ParseConsoleLine).
type console struct {
	file   *os.File
	events chan wire.ConsoleLine

	mu      sync.Mutex
	line    []byte
	written int64
	last    time.Time
	// lastOutputCPU is the VM process's CPU time when the guest last printed, or -1 when it
	// is to be taken at the next check.
	lastOutputCPU time.Duration
}

func newConsole(path string) (*console, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &console{file: f, events: make(chan wire.ConsoleLine, 16), last: time.Now()}, nil
}

// Write implements io.Writer for QEMU's serial output.
func (c *console) Write(p []byte) (int, error) {
	n := len(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = time.Now()
	c.lastOutputCPU = -1
	if c.written < maxConsoleLog {
		n, _ := c.file.Write(p)
		c.written += int64(n)
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(c.line) < 4096 {
				c.line = append(c.line, p...)
			}
			break
		}
		c.line = append(c.line, p[:i]...)
		c.scan(string(c.line))
		c.line = c.line[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (c *console) scan(line string) {
	l := wire.ParseConsoleLine(line)
	if l.Kind == wire.ConsoleOther {
		return
	}
	select {
	case c.events <- l:
	default: // nobody is waiting for boot events any more
	}
}

// silentFor returns how long the guest has printed nothing, in wall time and in CPU time the
// VM process used (cpu is its total CPU time now). CPU time keeps a loaded host, where a boot
// is merely slow, from looking like a hung boot that spins.
func (c *console) silentFor(cpu time.Duration) (wall, used time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastOutputCPU < 0 {
		c.lastOutputCPU = cpu
	}
	return time.Since(c.last), cpu - c.lastOutputCPU
}

// reset starts a new boot attempt: the silence clock restarts and a partial line is dropped.
func (c *console) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = time.Now()
	c.lastOutputCPU = 0
	c.line = c.line[:0]
	for {
		select {
		case <-c.events:
		default:
			return
		}
	}
}

func (c *console) Close() error { return c.file.Close() }
