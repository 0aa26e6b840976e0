// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
)

// Client talks to the shim of the VM in Dir. It may have been started by this process
// (Launch) or found again after a restart (Open).
type Client struct {
	dir string
	pid int
}

// Launch starts `binary vm shim --dir dir` for the VM whose spec is already in dir. The shim
// runs in its own session, so it outlives the caller; its output goes to dir/shim.log.
// templateMemory, when not nil, is passed on for a spec that restores with
// Restore.TemplateMemory.
func Launch(ctx context.Context, binary, dir string, templateMemory *os.File) (*Client, error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range []string{ControlSock, SSHSock} { // controlFD, sshFD
		f, err := listenFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("launch shim: %w", err)
		}
		files = append(files, f)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, ShimLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("launch shim: %w", err)
	}
	files = append(files, logFile)
	cmd := exec.Command(binary, "vm", "shim", "--dir", dir)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = slices.Clone(files[:2]) // controlFD, sshFD
	if templateMemory != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, templateMemory) // templateMemoryFD
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch shim: %w", err)
	}
	// Reap the shim if it exits while we run; if we exit first, init adopts it.
	go func() { _ = cmd.Wait() }()
	return &Client{dir: dir, pid: cmd.Process.Pid}, nil
}

func listenFile(path string) (*os.File, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The shim owns the socket file from now on; closing our listener must not remove it.
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	// Only this user may connect (whatever the umask): the VM's QEMU, which may traverse the
	// VM directory under a uid of its own, must not stop or renew its own VM.
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	return ln.File()
}

// Open returns a client for the shim recorded in dir/state.json.
func Open(dir string) (*Client, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	return &Client{dir: dir, pid: st.ShimPID}, nil
}

// Dir is the VM's directory.
func (c *Client) Dir() string { return c.dir }

// PID is the shim's process id.
func (c *Client) PID() int { return c.pid }

// Alive reports whether the shim process is running.
func (c *Client) Alive() bool { return processAlive(c.pid, c.dir) }

// Status returns the shim's state at once.
func (c *Client) Status(ctx context.Context) (State, error) { return c.call(ctx, OpStatus) }

// Wait returns the state once the boot is over; the error says why when it failed.
func (c *Client) Wait(ctx context.Context) (State, error) {
	st, err := c.call(ctx, OpWait)
	if err != nil {
		return st, err
	}
	if st.Phase != PhaseReady {
		return st, fmt.Errorf("vm %s: %s", st.Phase, st.Error)
	}
	return st, nil
}

// Stop stops the VM and the shim and waits until both are gone. If the shim does not answer,
// it kills the shim and the VM process recorded in its state.
func (c *Client) Stop(ctx context.Context) error {
	_, callErr := c.call(ctx, OpStop)
	if callErr == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := waitExit(wctx, c.pid)
		cancel()
		if err == nil {
			return nil
		}
	}
	st, _ := ReadState(c.dir)
	return errors.Join(killProcess(ctx, c.pid, c.dir), killProcess(ctx, st.QEMUPID, c.dir))
}

// Snapshot saves the VM into the new directory dir (see SnapshotRequest). Without keepRunning
// the shim stops the VM and exits once the snapshot is complete.
func (c *Client) Snapshot(ctx context.Context, dir string, keepRunning bool) (snapshot.Snapshot, error) {
	resp, err := c.request(ctx, Request{Op: OpSnapshot, Snapshot: &SnapshotRequest{Dir: dir, KeepRunning: keepRunning}})
	if err != nil {
		return snapshot.Snapshot{}, err
	}
	if resp.Snapshot == nil {
		return snapshot.Snapshot{}, errors.New("shim snapshot: no snapshot in the reply")
	}
	snap := *resp.Snapshot
	snap.Dir = dir
	return snap, nil
}

// DialSSH opens a byte stream to the guest's SSH port through the shim.
func (c *Client) DialSSH(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(c.dir, SSHSock))
	if err != nil {
		return nil, fmt.Errorf("dial guest ssh: %w", err)
	}
	return conn, nil
}

// Renew extends the VM's lease to lease from now (0: by the lease it has); a VM whose lease
// runs out stops itself (see Spec.Lease). After it ran out the error says so (ErrLeaseExpired).
func (c *Client) Renew(ctx context.Context, lease time.Duration) (State, error) {
	resp, err := c.request(ctx, Request{Op: OpRenew, Lease: lease})
	if err != nil && resp.Error == ErrLeaseExpired.Error() {
		err = fmt.Errorf("shim renew: %w", ErrLeaseExpired)
	}
	return resp.State, err
}

func (c *Client) call(ctx context.Context, op string) (State, error) {
	resp, err := c.request(ctx, Request{Op: op})
	return resp.State, err
}

func (c *Client) request(ctx context.Context, req Request) (Response, error) {
	op := req.Op
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(c.dir, ControlSock))
	if err != nil {
		return Response{}, fmt.Errorf("shim %s: %w", op, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() {
		// A past deadline wakes the blocked read or write below. It fails only when conn is
		// already closed, and then nothing is left to wake.
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return Response{}, fmt.Errorf("shim %s: %w", op, err)
	}
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Response{}, fmt.Errorf("shim %s: %w", op, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("shim %s: %s", op, resp.Error)
	}
	return resp, nil
}
