// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/pkgproxy"
	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/snapshot"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
)

// Inherited descriptors: the launcher creates the listening sockets and passes them, so they
// exist (and queue connections) before the shim runs; a restore from a template with shared
// memory also gets that memory.
const (
	controlFD        = 3
	sshFD            = 4
	templateMemoryFD = 5
)

// server is a running shim.
type server struct {
	dir     string
	spec    Spec
	logger  *slog.Logger
	backend hypervisor.Backend
	network *vnet.Network
	console *console
	lease   *lease
	memory  *os.File // template memory for a restore, else nil

	// The VM's disk chain: read-only backing files and the writable disk on top. Saves that
	// keep the VM running append the old disk to the backing. Only the run goroutine uses it.
	backing []string
	disk    string

	mu      sync.Mutex
	state   State
	booted  chan struct{}        // closed when the start is over (ready or failed)
	stop    chan struct{}        // closed on a stop request
	stopped chan struct{}        // closed when the VM is down
	saves   chan snapshotRequest // snapshot requests for the run goroutine
	once    sync.Once

	handlers sync.WaitGroup // control connections
}

// snapshotRequest is one OpSnapshot handed to the run goroutine.
type snapshotRequest struct {
	SnapshotRequest
	reply chan snapshotReply // buffered: the requester may be gone
}

type snapshotReply struct {
	snap snapshot.Snapshot
	err  error
}

// Inherited is what a shim gets from its launcher.
type Inherited struct {
	// Control and SSH are the listeners for control.sock and ssh.sock.
	Control, SSH net.Listener
	// TemplateMemory is the template's memory for a spec that restores with
	// Restore.TemplateMemory, else nil.
	TemplateMemory *os.File
}

// Run is the shim's main loop for the VM in dir, as run by `waggle vm shim`: it takes the
// control and SSH listeners Launch passed as descriptors 3 and 4 (and the template memory as 5,
// when the spec restores from one) and calls Serve.
func Run(ctx context.Context, dir string, logger *slog.Logger) error {
	ctl, err := inheritedListener(controlFD, ControlSock)
	if err != nil {
		return err
	}
	sshLn, err := inheritedListener(sshFD, SSHSock)
	if err != nil {
		ctl.Close()
		return err
	}
	in := Inherited{Control: ctl, SSH: sshLn}
	if spec, err := ReadSpec(dir); err == nil && spec.Restore != nil && spec.Restore.TemplateMemory {
		in.TemplateMemory = os.NewFile(templateMemoryFD, "template memory")
	}
	return Serve(ctx, dir, in, logger)
}

// Serve starts the VM whose spec is in dir, serves the control protocol on in.Control and the
// guest's SSH port on in.SSH, and returns once the VM is stopped (by a stop request, ctx, the
// VM exiting, or a snapshot that does not keep it running). It closes both listeners and the
// template memory.
func Serve(ctx context.Context, dir string, in Inherited, logger *slog.Logger) error {
	ctl, sshLn := in.Control, in.SSH
	defer ctl.Close()
	defer sshLn.Close()
	if in.TemplateMemory != nil {
		defer in.TemplateMemory.Close()
	}
	spec, err := ReadSpec(dir)
	if err != nil {
		return err
	}
	backend, err := newBackend(spec, logger)
	if err != nil {
		return err
	}
	if spec.Restore != nil && spec.Restore.TemplateMemory && in.TemplateMemory == nil {
		return errors.New("shim: the spec restores from template memory, but none was inherited")
	}
	spec.VM.Dir = dir
	spec.VM.NetSocket = filepath.Join(dir, NetSock)
	netLn, err := net.Listen("unix", spec.VM.NetSocket)
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	defer netLn.Close()
	network, err := vnet.New(logger, spec.Egress)
	if err != nil {
		return err
	}
	con, err := newConsole(filepath.Join(dir, ConsoleLog))
	if err != nil {
		return fmt.Errorf("shim: %w", err)
	}
	defer con.Close()
	phase := PhaseBooting
	if spec.Restore != nil {
		phase = PhaseRestoring
	}
	s := &server{
		dir: dir, spec: spec, logger: logger, backend: backend, network: network, console: con,
		memory: in.TemplateMemory, backing: slices.Clone(spec.VM.Backing), disk: spec.VM.Disk,
		lease:   newLease(spec.Lease),
		state:   State{ShimPID: os.Getpid(), Phase: phase},
		booted:  make(chan struct{}),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		saves:   make(chan snapshotRequest),
	}
	defer s.lease.stop()
	s.state.LeaseEnds = s.lease.end()
	if err := writeState(dir, s.state); err != nil {
		return fmt.Errorf("shim: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.serveNet(ctx, netLn) })
	ctlDone := make(chan struct{})
	go func() { s.serveControl(ctx, ctl); close(ctlDone) }()
	// The host reaches the guest's SSH server; the guest reaches the host's package proxy.
	wg.Go(func() {
		s.relay(ctx, sshLn, "ssh", func(ctx context.Context) (net.Conn, error) { return s.network.DialGuest(ctx, vnet.SSHPort) })
	})
	if ln := network.PackageListener(); ln != nil {
		wg.Go(func() { s.relay(ctx, ln, "package proxy", s.dialPackageProxy) })
	}

	err = s.run(ctx)
	close(s.stopped)
	ctl.Close()
	sshLn.Close()
	netLn.Close()
	if ln := network.PackageListener(); ln != nil {
		ln.Close()
	}
	// Control connections waiting for the stop get their reply before the shim exits.
	<-ctlDone
	s.handlers.Wait()
	cancel()
	wg.Wait()
	os.Remove(spec.VM.NetSocket)
	return err
}

// newBackend is the hypervisor backend the spec names.
func newBackend(spec Spec, logger *slog.Logger) (hypervisor.Backend, error) {
	switch spec.Backend {
	case "qemu", "":
		qcfg := qemu.DefaultConfig()
		qcfg.Binary, qcfg.CgroupRoot, qcfg.Logger = spec.QEMUBinary, spec.CgroupRoot, logger
		if spec.QEMUImgBinary != "" {
			qcfg.ImgBinary = spec.QEMUImgBinary
		}
		return qemu.New(qcfg), nil
	}
	return nil, fmt.Errorf("shim: unknown backend %q", spec.Backend)
}

func inheritedListener(fd uintptr, name string) (net.Listener, error) {
	f := os.NewFile(fd, name)
	if f == nil {
		return nil, fmt.Errorf("shim: descriptor %d (%s) not inherited", fd, name)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("shim: %s: %w", name, err)
	}
	return ln, nil
}

// run starts the VM and supervises it until it should stop.
func (s *server) run(ctx context.Context) error {
	start := s.boot
	if s.spec.Restore != nil {
		start = s.restore
	}
	vm, err := start(ctx)
	if err != nil {
		s.setState(func(st *State) { st.Phase, st.Error = PhaseFailed, err.Error() })
		close(s.booted)
		// Stay reachable so the launcher can read why, until told to stop.
		select {
		case <-s.stop:
		case <-ctx.Done():
		case <-s.lease.expired:
		}
		return err
	}
	close(s.booted)
	var reason string
	for reason == "" {
		select {
		case req := <-s.saves:
			snap, err := s.snapshot(ctx, vm, req.SnapshotRequest)
			req.reply <- snapshotReply{snap, err}
			if err == nil && !req.KeepRunning {
				reason = "saved"
			}
		case <-s.stop:
			reason = "stop request"
		case <-ctx.Done():
			reason = "signal"
		case <-vm.Done():
			reason = "vm exited"
		case <-s.lease.expired:
			reason = "lease expired: no agent renewed it"
		}
	}
	s.logger.Info("stopping vm", "reason", reason)
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := vm.Stop(stopCtx); err != nil {
		return err
	}
	s.setState(func(st *State) { st.Phase = PhaseStopped })
	return nil
}

// prepareDisk is the first stage of every start: the VM's writable disk over its chain.
func (s *server) prepareDisk(ctx context.Context) error {
	if err := s.backend.PrepareDisk(ctx, s.disk, s.backing, s.spec.DiskMiB); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	return nil
}

// boot creates the disk, starts the VM and waits for the ready marker, retrying a boot that
// goes silent.
func (s *server) boot(ctx context.Context) (hypervisor.Handle, error) {
	start := time.Now()
	var lastErr error
	for attempt := 1; attempt <= max(s.spec.Attempts, 1); attempt++ {
		// Each attempt starts from a fresh disk: a hung boot may have written to it.
		_ = os.Remove(s.disk)
		if err := s.prepareDisk(ctx); err != nil {
			return nil, err
		}
		s.console.reset()
		vmSpec := s.spec.VM
		vmSpec.Console = s.console
		vm, err := s.backend.Start(ctx, vmSpec)
		if err != nil {
			return nil, err
		}
		pid, _ := strconv.Atoi(vm.ID())
		s.setState(func(st *State) { st.QEMUPID, st.Attempts = pid, attempt })
		err = s.waitReady(ctx, vm)
		if err == nil {
			s.setState(func(st *State) { st.Phase, st.BootSeconds = PhaseReady, time.Since(start).Seconds() })
			s.logger.Info("vm ready", "attempt", attempt, "seconds", time.Since(start).Seconds(),
				"qemu_cpu", processCPU(vm.ID()))
			return vm, nil
		}
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stopErr := vm.Stop(stopCtx)
		cancel()
		if stopErr != nil {
			return nil, errors.Join(err, stopErr)
		}
		lastErr = fmt.Errorf("boot attempt %d: %w", attempt, err)
		s.logger.Warn("boot failed", "attempt", attempt, "err", err)
		if !errors.Is(err, errSilent) {
			break
		}
	}
	return nil, lastErr
}

var errSilent = errors.New("guest console silent")

// waitReady waits for the ready marker on the console.
func (s *server) waitReady(ctx context.Context, vm hypervisor.Handle) error {
	timeout := time.NewTimer(s.spec.BootTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-s.console.events:
			switch ev.Kind {
			case wire.ConsoleReady:
				return nil
			case wire.ConsoleFailed:
				return fmt.Errorf("guest: %s", ev.Text)
			case wire.ConsoleHostKey:
				s.setState(func(st *State) { st.HostKey = wire.MarshalKey(ev.HostKey) })
			}
		case <-tick.C:
			wall, cpu := s.console.silentFor(processCPU(vm.ID()))
			if wall > s.spec.SilenceTimeout || (s.spec.SilenceCPU > 0 && cpu > s.spec.SilenceCPU) {
				return fmt.Errorf("%w for %s (%s of CPU time)", errSilent, wall.Round(time.Millisecond), cpu)
			}
		case <-vm.Done():
			return fmt.Errorf("qemu exited during boot (see %s and qemu.log)", ConsoleLog)
		case <-timeout.C:
			return fmt.Errorf("not ready after %s", s.spec.BootTimeout)
		case <-s.stop:
			return errors.New("stopped during boot")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *server) setState(f func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.state)
	if err := writeState(s.dir, s.state); err != nil {
		s.logger.Error("write state", "err", err)
	}
}

func (s *server) currentState() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// serveNet hands each QEMU connection (one per boot attempt) to the virtual network.
func (s *server) serveNet(ctx context.Context, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			if err := s.network.ServeQEMU(ctx, conn); err != nil {
				s.logger.Warn("network", "err", err)
			}
		}()
	}
}

func (s *server) serveControl(ctx context.Context, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.handlers.Go(func() { s.handleControl(ctx, conn) })
	}
}

func (s *server) handleControl(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	dec := json.NewDecoder(io.LimitReader(conn, maxRequest))
	var raw json.RawMessage
	var resp Response
	req, err := Request{}, dec.Decode(&raw)
	if err == nil {
		req, err = DecodeRequest(raw)
	}
	if err != nil {
		resp.Error = err.Error()
	} else {
		switch req.Op {
		case OpWait:
			s.waitSettled(ctx)
		case OpStop:
			s.once.Do(func() { close(s.stop) })
			select {
			case <-s.stopped:
			case <-ctx.Done():
			}
		case OpRenew:
			if ends, err := s.lease.renew(req.Lease); err != nil {
				resp.Error = err.Error()
			} else {
				s.setState(func(st *State) { st.LeaseEnds = ends })
			}
		case OpSnapshot:
			snap, err := s.requestSnapshot(ctx, *req.Snapshot)
			if err != nil {
				resp.Error = err.Error()
			} else {
				resp.Snapshot = &snap
			}
		}
	}
	resp.State = s.currentState()
	_ = json.NewEncoder(conn).Encode(resp)
}

// waitSettled waits until the start is over and no snapshot is being taken (a launcher that
// restarted during one finds the VM ready again, or stopped after a pause).
func (s *server) waitSettled(ctx context.Context) {
	select {
	case <-s.booted:
	case <-ctx.Done():
		return
	}
	for s.currentState().Phase == PhaseSaving {
		select {
		case <-s.stopped:
			return
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// requestSnapshot hands a snapshot to the run goroutine and waits for it. The snapshot goes on
// if the requester goes away; State.Snapshot tells how it ended.
func (s *server) requestSnapshot(ctx context.Context, r SnapshotRequest) (snapshot.Snapshot, error) {
	select {
	case <-s.booted:
	case <-ctx.Done():
		return snapshot.Snapshot{}, ctx.Err()
	}
	if st := s.currentState(); st.Phase != PhaseReady {
		return snapshot.Snapshot{}, fmt.Errorf("the vm is %s, not %s", st.Phase, PhaseReady)
	}
	req := snapshotRequest{SnapshotRequest: r, reply: make(chan snapshotReply, 1)}
	select {
	case s.saves <- req:
	case <-s.stopped:
		return snapshot.Snapshot{}, errors.New("the vm is not running")
	case <-ctx.Done():
		return snapshot.Snapshot{}, ctx.Err()
	}
	rep := <-req.reply
	return rep.snap, rep.err
}

// relay accepts connections on ln until it is closed and splices each to a connection from
// dial: ssh.sock's to the guest's SSH port, the guest's to the package proxy.
func (s *server) relay(ctx context.Context, ln net.Listener, name string, dial func(context.Context) (net.Conn, error)) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			peer, err := dial(dctx)
			cancel()
			if err != nil {
				s.logger.Warn(name+" relay", "err", err)
				return
			}
			defer peer.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close(); peer.Close() })
			defer stop()
			splice(conn, peer)
		}()
	}
}

// errNoPackageProxy is the dial error of a VM whose spec names no package proxy.
var errNoPackageProxy = errors.New("this VM has no package proxy")

// dialPackageProxy connects to the host's package proxy on behalf of this VM.
func (s *server) dialPackageProxy(ctx context.Context) (net.Conn, error) {
	if s.spec.PackageProxy == "" {
		return nil, errNoPackageProxy
	}
	return pkgproxy.DialVM(ctx, s.spec.PackageProxy, s.spec.VM.Name)
}

// splice copies both ways until both directions are done, passing half-closes on.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Go(func() { half(a, b) })
	wg.Go(func() { half(b, a) })
	wg.Wait()
}
