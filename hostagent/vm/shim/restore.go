// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/waggle-dev/waggle/hostagent/guest/wire"
	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
)

// identityEntropy is how much fresh host randomness a restored guest gets.
const identityEntropy = 64

// restore starts the VM from saved state, in named stages: disk, start (QEMU loading the state),
// resume (the load done, the guest running), identify (a new identity for the guest). A failure
// names its stage.
func (s *server) restore(ctx context.Context) (hypervisor.Handle, error) {
	r := s.spec.Restore
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	if err := s.prepareDisk(ctx); err != nil {
		return nil, err
	}
	state, err := os.Open(r.State)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	defer state.Close()
	vmSpec := s.spec.VM
	vmSpec.Console, vmSpec.Incoming, vmSpec.TemplateMemory = s.console, state, s.memory
	vm, err := s.backend.Start(ctx, vmSpec)
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	pid, _ := strconv.Atoi(vm.ID())
	s.setState(func(st *State) { st.QEMUPID, st.Attempts = pid, 1 })
	stages := []struct {
		name string
		run  func() error
	}{
		{"resume", func() error { return vm.Resume(ctx) }},
		{"identify", func() error { return s.identify(ctx) }},
	}
	timings := []any{"start_ms", time.Since(start).Milliseconds()}
	for _, st := range stages {
		t := time.Now()
		if err := st.run(); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return nil, errors.Join(fmt.Errorf("%s: %w", st.name, err), vm.Stop(stopCtx))
		}
		timings = append(timings, st.name+"_ms", time.Since(t).Milliseconds())
	}
	// The saved state and the old key are spent; the snapshot keeps its own copies.
	for _, f := range []string{r.State, r.Key} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.logger.Warn("remove restore file", "err", err)
		}
	}
	s.setState(func(st *State) { st.Phase, st.BootSeconds = PhaseReady, time.Since(start).Seconds() })
	s.logger.Info("vm restored", append([]any{"seconds", time.Since(start).Seconds(), "template_memory", s.memory != nil}, timings...)...)
	return vm, nil
}

// identify gives the restored guest its new identity (see wire.IdentityRequest), over an SSH
// connection made with the saved guest's keys, and records the new host key.
func (s *server) identify(ctx context.Context) error {
	r := s.spec.Restore
	keyPEM, err := os.ReadFile(r.Key)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("saved key: %w", err)
	}
	oldHostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.HostKey))
	if err != nil {
		return fmt.Errorf("saved host key: %w", err)
	}
	id := wire.Identity{Hostname: s.spec.VM.Name, AuthorizedKey: r.AuthorizedKey, Entropy: make([]byte, identityEntropy)}
	if _, err := rand.Read(id.Entropy); err != nil {
		return err
	}
	conn, err := s.network.DialGuest(ctx, wire.SSHPort)
	if err != nil {
		return err
	}
	c, err := guestclient.Dial(ctx, conn, signer, guestclient.WithHostKey(oldHostKey))
	if err != nil {
		return err
	}
	defer c.Close()
	id.UnixNano = time.Now().UnixNano()
	hostKey, err := c.Identify(ctx, id)
	if err != nil {
		return err
	}
	s.setState(func(st *State) { st.HostKey = wire.MarshalKey(hostKey) })
	return nil
}
