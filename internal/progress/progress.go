// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

// Package progress tells a person how a long operation goes: one line per stage with the time
// the stage took and the time since the operation began, and a bar for work whose total is
// known. Lines from concurrent work share one writer without interleaving.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Reporter writes progress lines to one writer. Its methods are safe for concurrent use. A nil
// *Reporter reports nothing (Stage still runs the stage); the zero value is not usable, use New.
type Reporter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	// live is set when w is a terminal: a bar is redrawn in place instead of printed as lines.
	live bool
	// drawn is the bar drawn last on a live terminal (its line has no newline yet).
	drawn *Bar
}

// New reports to w (nil discards everything), timing from now.
func New(w io.Writer) *Reporter {
	if w == nil {
		w = io.Discard
	}
	f, ok := w.(*os.File)
	return newReporter(w, ok && term.IsTerminal(int(f.Fd())))
}

func newReporter(w io.Writer, live bool) *Reporter {
	return &Reporter{w: w, start: time.Now(), live: live}
}

// Printf writes one line about label: "<elapsed> [label] message".
func (r *Reporter) Printf(label, format string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lineLocked(label, fmt.Sprintf(format, args...))
}

func (r *Reporter) lineLocked(label, msg string) {
	if r.drawn != nil {
		fmt.Fprint(r.w, "\r\x1b[K") // the bar's line becomes this line; the bar follows it
	}
	fmt.Fprintf(r.w, "%7s [%s] %s\n", Elapsed(time.Since(r.start)), label, msg)
	if r.drawn != nil {
		fmt.Fprint(r.w, r.drawn.line())
	}
}

// Stage runs one named stage of label: it prints what starts (unless what is empty), then the
// stage's summary, or that it failed, with the time it took. run's error is returned as it is.
func (r *Reporter) Stage(label, name, what string, run func() (summary string, err error)) error {
	if what != "" {
		r.Printf(label, "%s: %s", name, what)
	}
	start := time.Now()
	summary, err := run()
	took := Elapsed(time.Since(start))
	if err != nil {
		r.Printf(label, "%s: FAILED after %s", name, took)
		return err
	}
	if summary == "" {
		summary = "done"
	}
	r.Printf(label, "%s: %s (%s)", name, summary, took)
	return nil
}

// Elapsed formats a duration for a person: tenths of seconds below a minute, then minutes and
// seconds ("12.3s", "4m05s").
func Elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// Bar tracks work of a known total. On a terminal it is redrawn in place; elsewhere (a log
// file, a test) it prints a line at most every LineInterval, and always when it is done.
type Bar struct {
	r           *Reporter
	label, name string
	total       int
	start       time.Time

	// Guarded by r.mu:
	done      int
	lastLine  time.Time
	finished  bool
	lastShown int
}

// LineInterval is how often a bar prints its state as a line when the writer is not a terminal.
const LineInterval = 2 * time.Second

// barWidth is the number of cells of a bar.
const barWidth = 24

// Bar starts a bar for name of label, out of total steps (at least 1).
func (r *Reporter) Bar(label, name string, total int) *Bar {
	b := &Bar{r: r, label: label, name: name, total: max(total, 1), start: time.Now(), lastShown: -1}
	if r == nil {
		return b
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.showLocked()
	return b
}

// Add records n more steps done.
func (b *Bar) Add(n int) {
	if b.r == nil {
		return
	}
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	if b.finished {
		return
	}
	b.done = min(b.done+n, b.total)
	b.showLocked()
}

// Done ends the bar with a line saying summary (or how many steps were done) and the time it
// took.
func (b *Bar) Done(summary string) {
	r := b.r
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if r.drawn == b {
		fmt.Fprint(r.w, "\r\x1b[K")
		r.drawn = nil
	}
	if summary == "" {
		summary = fmt.Sprintf("%d/%d", b.done, b.total)
	}
	r.lineLocked(b.label, fmt.Sprintf("%s: %s (%s)", b.name, summary, Elapsed(time.Since(b.start))))
}

// showLocked draws the bar on a terminal, or prints it as a line when it is due.
func (b *Bar) showLocked() {
	r := b.r
	if r.live {
		if r.drawn != nil && r.drawn != b {
			fmt.Fprint(r.w, "\n") // keep the other bar's last state on its own line
		}
		r.drawn = b
		fmt.Fprint(r.w, "\r\x1b[K"+b.line())
		return
	}
	if b.done == b.lastShown || (time.Since(b.lastLine) < LineInterval && b.done < b.total) {
		return
	}
	b.lastLine, b.lastShown = time.Now(), b.done
	fmt.Fprintln(r.w, b.line())
}

// line is the bar as a line without its newline: "<elapsed> [label] name [####----] 3/8 37% 4.2s".
func (b *Bar) line() string {
	filled := b.done * barWidth / b.total
	return fmt.Sprintf("%7s [%s] %s [%s%s] %d/%d %d%% %s", Elapsed(time.Since(b.r.start)), b.label, b.name,
		strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), b.done, b.total, b.done*100/b.total,
		Elapsed(time.Since(b.start)))
}
