// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
	"github.com/waggle-dev/waggle/images"
)

func newVMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Run microVMs directly (a smoke test for a new host)",
	}
	cmd.AddCommand(newVMRunCmd(), newVMPrepareCmd(), newVMShimCmd())
	return cmd
}

// vmRunOptions are the flags of `waggle vm run`.
type vmRunOptions struct {
	vm                 vmOptions
	dataDir, image     string
	memory, cpus, disk int
	timeout            time.Duration
	verbose            bool
}

func newVMRunCmd() *cobra.Command {
	var o vmRunOptions
	cmd := &cobra.Command{
		Use:   "run --image NAME [flags] -- CMD [ARG...]",
		Short: "Boot a VM from a built image, run one command in it, and remove the VM",
		Long: "Boots a microVM from the built image NAME, runs CMD as the guest's sandbox user, prints its\n" +
			"stdout and stderr, removes the VM and exits with the command's exit code.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVM(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir, "data directory: VM state in vms/, kernel and images in cache/")
	f.StringVar(&o.image, "image", "", "built image to boot (see waggle images ls)")
	f.IntVar(&o.memory, "memory", 512, "guest memory in MiB")
	f.IntVar(&o.cpus, "cpus", 1, "guest CPUs")
	f.IntVar(&o.disk, "disk", 2048, "guest root disk size in MiB")
	o.vm.addFlags(f, vnet.EgressNone)
	f.DurationVar(&o.timeout, "timeout", 0, "kill the command after this long (0: no limit)")
	f.BoolVar(&o.verbose, "verbose", false, "log the VM's boot stages")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

func runVM(cmd *cobra.Command, o vmRunOptions, argv []string) error {
	ctx := cmd.Context()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	img, err := images.Find(cacheDir(o.dataDir), o.image)
	if err != nil {
		return err
	}
	mgr, err := o.vm.newManager(o.dataDir, cacheDir(o.dataDir), "", logger)
	if err != nil {
		return err
	}
	mach, err := mgr.Launch(ctx, vm.LaunchSpec{ImagePath: img.Path, CPUs: o.cpus, MemoryMiB: o.memory, DiskMiB: o.disk})
	if err != nil {
		return err
	}
	// The VM is removed even when ctx was cancelled by a signal.
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := mach.Stop(stopCtx); err != nil {
			logger.Error("remove vm", "err", err)
		}
	}()
	client, err := mach.Connect(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	res, err := client.Exec(ctx, guestclient.ExecRequest{Argv: argv, Timeout: o.timeout, MaxOutput: -1})
	_, outErr := cmd.OutOrStdout().Write(res.Stdout)
	_, errErr := cmd.ErrOrStderr().Write(res.Stderr)
	if err := errors.Join(err, outErr, errErr); err != nil {
		return err
	}
	if res.TimedOut {
		fmt.Fprintf(cmd.ErrOrStderr(), "waggle: command timed out after %s\n", o.timeout)
	}
	if res.ExitCode != 0 {
		code := res.ExitCode
		if code < 0 {
			code = 124 // timed out, as timeout(1) reports it
		}
		return exitError{code}
	}
	return nil
}

// findInit returns the waggle-init binary: the flag, else waggle-init beside self, else in PATH.
func findInit(flag, self string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	beside := filepath.Join(filepath.Dir(self), "waggle-init")
	if _, err := os.Stat(beside); err == nil {
		return beside, nil
	}
	if p, err := exec.LookPath("waggle-init"); err == nil {
		return p, nil
	}
	return "", errors.New("waggle-init not found beside waggle or in PATH: build it with " +
		"`CGO_ENABLED=0 go build -o " + beside + " ./cmd/waggle-init` or pass --init")
}

// vmPrepareOptions are the flags of `waggle vm prepare`.
type vmPrepareOptions struct {
	vm                 vmOptions
	dataDir            string
	images             []string
	memory, cpus, disk int
}

func newVMPrepareCmd() *cobra.Command {
	var o vmPrepareOptions
	cmd := &cobra.Command{
		Use:   "prepare [--image NAME...]",
		Short: "Fetch the guest kernel, build the initramfs, settle the acceleration and build template snapshots",
		Long: "Fetches the guest kernel, builds the initramfs and settles the acceleration (auto probes KVM once).\n" +
			"With --image, it also builds the template snapshot of each named image at the given size (VMs of\n" +
			"that image and size start from it), unless an up-to-date one exists.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return prepareVM(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir, "data directory; the kernel, initramfs and templates go to its cache/")
	f.StringSliceVar(&o.images, "image", nil, "built images to make template snapshots of (repeatable or comma separated)")
	f.IntVar(&o.memory, "memory", 512, "guest memory in MiB of the templates")
	f.IntVar(&o.cpus, "cpus", 1, "guest CPUs of the templates")
	f.IntVar(&o.disk, "disk", 2048, "guest root disk size in MiB of the templates")
	o.vm.addFlags(f, "")
	return cmd
}

func prepareVM(cmd *cobra.Command, o vmPrepareOptions) error {
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	cache := cacheDir(o.dataDir)
	mgr, err := o.vm.newManager(o.dataDir, cache, "", logger)
	if err != nil {
		return err
	}
	accel, err := mgr.Accel(cmd.Context())
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "kernel and initramfs ready in %s; acceleration: %s\n", cache, accel)
	for _, name := range o.images {
		img, err := images.Find(cache, name)
		if err != nil {
			return err
		}
		tpl, err := mgr.Template(cmd.Context(), vm.TemplateSpec{ImagePath: img.Path, CPUs: o.cpus, MemoryMiB: o.memory, DiskMiB: o.disk})
		if err != nil {
			return fmt.Errorf("template of %s: %w", name, err)
		}
		size, _ := tpl.Snapshot.Size()
		what := "up to date"
		if tpl.Built {
			what = fmt.Sprintf("built in %.1f s", tpl.BuildTime.Seconds())
		}
		fmt.Fprintf(cmd.OutOrStdout(), "template %s (%d CPU, %d MiB): %s, %d MiB, in %s\n", name, o.cpus, o.memory, what, size>>20, tpl.Dir)
	}
	return nil
}

func newVMShimCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "shim --dir DIR",
		Short:  "Supervise one VM (started by the host agent, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return shim.Run(cmd.Context(), dir, logger)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the VM's directory (with spec.json and the inherited sockets)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
