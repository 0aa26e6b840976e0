package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/waggle-dev/waggle/hostagent"
	"github.com/waggle-dev/waggle/hostagent/vm"
)

// egressUsage documents the --egress flag of the commands that boot VMs.
const egressUsage = "what guests may connect to: none, packages (TCP 80/443 to PyPI, npm and Debian only) or\n" +
	"allow:HOST|CIDR,... (TCP 80/443 to those only); private, loopback and metadata addresses are always refused"

// newLogger is a text logger on w at the named level (debug, info, warn, error).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// newVMMachines is the real microVM layer of one host agent whose state lives in stateDir.
func newVMMachines(stateDir string, o hostAgentOptions, logger *slog.Logger) (hostagent.Machines, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	initBin, err := findInit(o.init, self)
	if err != nil {
		return nil, err
	}
	vcfg := vm.DefaultConfig()
	vcfg.StateDir, vcfg.CacheDir = stateDir, o.cacheDir
	vcfg.WaggleBinary, vcfg.InitBinary = self, initBin
	vcfg.Accel, vcfg.QEMUUser, vcfg.Logger = o.accel, o.qemuUser, logger
	vcfg.Egress = o.egress
	mgr, err := vm.NewManager(vcfg)
	if err != nil {
		return nil, err
	}
	return hostagent.NewVMMachines(mgr, o.cacheDir, logger), nil
}
