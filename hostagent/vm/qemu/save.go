// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
)

// maxBandwidth lifts QEMU's migration rate limit (about 128 MiB/s by default): a save to a
// local file should go as fast as the disk takes it.
const maxBandwidth = int64(1) << 40

// migratePoll is how often a save or a load is polled for completion.
const migratePoll = 2 * time.Millisecond

// conn returns the QMP connection, dialing it on first use. p.mu must be held.
func (p *Process) conn(ctx context.Context) (*QMP, error) {
	if p.qmp != nil {
		return p.qmp, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // stop dialing once QEMU is gone
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	q, err := DialQMP(ctx, qmpPath(p.spec.Dir))
	if err != nil {
		return nil, p.exitErr(err)
	}
	p.qmp = q
	return q, nil
}

// exitErr explains err by QEMU's exit and its last messages when QEMU has exited.
func (p *Process) exitErr(err error) error {
	select {
	case <-p.done:
	case <-time.After(100 * time.Millisecond):
		return err
	}
	msg := "qemu exited"
	if p.err != nil {
		msg += " (" + p.err.Error() + ")"
	}
	if tail := logTail(p.logPath, 3); tail != "" {
		msg += ": " + tail
	}
	return errors.New(msg)
}

// logTail returns the last n lines of the log at path, joined by "; ".
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	lines = lines[max(0, len(lines)-n):]
	return strings.Join(lines, "; ")
}

// startIncoming tells the QEMU started with -incoming defer to load the inherited state.
func (p *Process) startIncoming(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, err := p.conn(ctx)
	if err != nil {
		return err
	}
	if err := setIgnoreShared(ctx, q, p.spec.TemplateMemory != nil); err != nil {
		return p.exitErr(err)
	}
	fd := firstFD + len(p.spec.Backing)
	if p.spec.TemplateMemory != nil {
		fd++
	}
	if err := q.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:" + strconv.Itoa(fd)}, nil); err != nil {
		return p.exitErr(err)
	}
	p.incoming = true
	return nil
}

// setIgnoreShared sets x-ignore-shared: a migration then leaves out the memory of a shared
// memory file (it is in the file), on both sides.
func setIgnoreShared(ctx context.Context, q *QMP, on bool) error {
	return q.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": on}},
	}, nil)
}

// Resume implements hypervisor.Handle: it waits for saved state to be loaded, then runs the
// guest.
func (p *Process) Resume(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, err := p.conn(ctx)
	if err != nil {
		return err
	}
	if p.incoming {
		if err := p.waitMigration(ctx, q); err != nil {
			return fmt.Errorf("load saved state: %w", err)
		}
		p.incoming = false
	}
	if err := q.Execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("continue: %w", p.exitErr(err))
	}
	return nil
}

// waitMigration polls query-migrate until the migration (in or out) completed or failed.
func (p *Process) waitMigration(ctx context.Context, q *QMP) error {
	for {
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		if err := q.Execute(ctx, "query-migrate", nil, &st); err != nil {
			return p.exitErr(err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return p.exitErr(fmt.Errorf("migration %s: %s", st.Status, st.Error))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(migratePoll):
		}
	}
}

// Save implements hypervisor.Handle: stop the guest, switch to spec.Overlay if given, and
// migrate into spec.State (memory left out for a VM with SharedMemory).
func (p *Process) Save(ctx context.Context, spec hypervisor.SaveSpec) (hypervisor.SaveResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.incoming {
		return hypervisor.SaveResult{}, errors.New("save: the VM is still loading its state")
	}
	q, err := p.conn(ctx)
	if err != nil {
		return hypervisor.SaveResult{}, fmt.Errorf("save: %w", err)
	}
	start := time.Now()
	if err := q.Execute(ctx, "stop", nil, nil); err != nil {
		return hypervisor.SaveResult{}, fmt.Errorf("save: pause: %w", p.exitErr(err))
	}
	var res hypervisor.SaveResult
	if spec.Overlay != "" {
		frozen := p.disk
		if err := p.switchDisk(ctx, q, spec.Overlay); err != nil {
			return hypervisor.SaveResult{}, fmt.Errorf("save: new overlay: %w", err)
		}
		res.Frozen = frozen // from here on, also a failed save returns it: the overlay took over
	}
	if p.spec.SharedMemory {
		res.Memory = memoryPath(p.spec.Dir)
	}
	steps := []struct {
		what string
		run  func() error
	}{
		{"capabilities", func() error { return setIgnoreShared(ctx, q, p.spec.SharedMemory) }},
		{"bandwidth", func() error {
			return q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": maxBandwidth}, nil)
		}},
		{"pass state file", func() error {
			return q.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "state"}, nil, spec.State)
		}},
		{"migrate", func() error { return q.Execute(ctx, "migrate", map[string]string{"uri": "fd:state"}, nil) }},
		{"migrate", func() error { return p.waitMigration(ctx, q) }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return res, fmt.Errorf("save: %s: %w", s.what, p.exitErr(err))
		}
	}
	st, err := spec.State.Stat()
	if err != nil {
		return res, fmt.Errorf("save: %w", err)
	}
	if res.Frozen == "" {
		res.Frozen = p.disk
	}
	res.Bytes, res.Paused = st.Size(), time.Since(start)
	return res, nil
}

// switchDisk makes the paused VM write to overlay (a new qcow2 over its current disk) from now
// on. The old disk becomes a read-only layer; it is handed back from QEMU's user to ours, so
// that QEMU cannot open it for writing again.
func (p *Process) switchDisk(ctx context.Context, q *QMP, overlay string) error {
	if err := p.handOver(overlay); err != nil {
		return err
	}
	p.overlays++
	node := topNode + strconv.Itoa(p.overlays)
	err := q.Execute(ctx, "blockdev-add", map[string]any{
		"driver": "qcow2", "node-name": node, "discard": "unmap", "backing": nil,
		"file": map[string]any{"driver": "file", "filename": overlay, "discard": "unmap"},
	}, nil)
	if err != nil {
		return p.exitErr(err)
	}
	if err := q.Execute(ctx, "blockdev-snapshot", map[string]string{"node": p.top, "overlay": node}, nil); err != nil {
		return p.exitErr(err)
	}
	frozen := p.disk
	p.top, p.disk = node, overlay
	if err := os.Chown(frozen, os.Getuid(), os.Getgid()); err != nil {
		return err
	}
	return os.Chmod(frozen, 0o400)
}

// handOver gives path to the user QEMU runs as (see runAs).
func (p *Process) handOver(path string) error {
	c := p.cmd.SysProcAttr.Credential
	if c == nil {
		return nil
	}
	if err := os.Chown(path, int(c.Uid), int(c.Gid)); err != nil {
		return fmt.Errorf("hand %s to qemu: %w", filepath.Base(path), err)
	}
	return os.Chmod(path, 0o600)
}

// closeQMP drops the QMP connection (after QEMU exited).
func (p *Process) closeQMP() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.qmp != nil {
		p.qmp.Close()
		p.qmp = nil
	}
}
