// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// firstExec connects to mach and runs `true`, the first successful call of a client; it
// returns how long the SSH handshake and the exec took.
func firstExec(b *testing.B, mach *vm.Machine) (handshake, exec float64) {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	c, err := mach.Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	t1 := time.Now()
	if res, err := c.Exec(ctx, guestclient.ExecRequest{Argv: []string{"true"}}); err != nil || res.ExitCode != 0 {
		b.Fatalf("true: %v %+v", err, res)
	}
	return t1.Sub(t0).Seconds(), time.Since(t1).Seconds()
}

func stopVM(b *testing.B, mach *vm.Machine) {
	b.Helper()
	if err := mach.Stop(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// templatesMode is the template mode benchmarks use: $VMTEST_TEMPLATES, else the default.
func templatesMode() string {
	if m := os.Getenv("VMTEST_TEMPLATES"); m != "" {
		return m
	}
	return vm.TemplatesShared
}

// benchManager is a Manager in templatesMode whose template for image exists.
func benchManager(b *testing.B, image string) *vm.Manager {
	b.Helper()
	m := vmtest.Manager(b, func(c *vm.Config) { c.Templates = templatesMode() })
	if _, err := m.Template(context.Background(), vm.TemplateSpec{ImagePath: image}); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkLaunch reports the median time from Launch to the first successful exec, for a
// restore from the template and for a cold boot (run with -benchtime=5x).
func BenchmarkLaunch(b *testing.B) {
	for _, how := range []string{"template", "cold"} {
		b.Run(how, func(b *testing.B) {
			image := benchImage(b)
			m := benchManager(b, image)
			var ready, start, launch, handshake, exec []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				mach, err := m.Launch(context.Background(), vm.LaunchSpec{ImagePath: image, ColdBoot: how == "cold"})
				if err != nil {
					b.Fatal(err)
				}
				launch = append(launch, time.Since(t0).Seconds())
				h, e := firstExec(b, mach)
				ready = append(ready, time.Since(t0).Seconds())
				start, handshake, exec = append(start, mach.BootTime().Seconds()), append(handshake, h), append(exec, e)
				b.StopTimer()
				stopVM(b, mach)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(median(ready), "s-to-first-exec-median")
			b.ReportMetric(median(start), "s-shim-start-median")
			b.ReportMetric(median(launch), "s-launch-median")
			b.ReportMetric(median(handshake), "s-handshake-median")
			b.ReportMetric(median(exec), "s-exec-median")
			b.Logf("mode=%s %s: to first exec %v", templatesMode(), how, ready)
		})
	}
}

// BenchmarkSnapshot reports the median time the guest is paused to save it (a VM that keeps
// running, as a fork's source), per GiB of guest memory, and the snapshot's size: for an idle
// guest, and for one that first filled fillMiB of its memory (a tmpfs file) with data.
func BenchmarkSnapshot(b *testing.B) {
	for _, fill := range []int{0, fillMiB} {
		b.Run(map[bool]string{true: "idle", false: "filled"}[fill == 0], func(b *testing.B) {
			image := benchImage(b)
			m := benchManager(b, image)
			mach := vmtest.Launch(b, m, vm.LaunchSpec{ImagePath: image})
			firstExec(b, mach)
			if fill > 0 {
				fillMemory(b, mach, fill)
			}
			dir := b.TempDir()
			var paused, wall []float64
			var size int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				snap, err := mach.Snapshot(context.Background(), filepath.Join(dir, strconv.Itoa(i)), vm.SnapshotOptions{KeepRunning: true})
				if err != nil {
					b.Fatal(err)
				}
				wall = append(wall, time.Since(t0).Seconds())
				paused = append(paused, snap.PausedSeconds)
				b.StopTimer()
				size, _ = snap.Size()
				if err := snap.Remove(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			gib := float64(vm.DefaultConfig().MemoryMiB) / 1024
			b.ReportMetric(median(paused)/gib, "s-paused-per-GiB-median")
			b.ReportMetric(median(paused)/(float64(size)/(1<<30)), "s-paused-per-GiB-saved-median")
			b.ReportMetric(median(wall), "s-snapshot-median")
			b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
		})
	}
}

// fillMiB is how much of a 512 MiB guest BenchmarkSnapshot/filled fills.
const fillMiB = 384

// fillMemory makes the guest write mib MiB of non-zero data into a tmpfs file.
func fillMemory(b *testing.B, mach *vm.Machine, mib int) {
	b.Helper()
	ctx := context.Background()
	c, err := mach.Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// busybox images have no yes applet link, Debian ones no busybox.
	cmd := fmt.Sprintf("{ if command -v yes >/dev/null; then yes waggle; else busybox yes waggle; fi; } | head -c %dM > /tmp/fill", mib)
	if res, err := c.Exec(ctx, guestclient.ExecRequest{Command: cmd, Timeout: 5 * time.Minute}); err != nil || res.ExitCode != 0 {
		b.Fatalf("fill: %v %+v", err, res)
	}
}

// BenchmarkFork reports the median time of a fork: a snapshot of a running VM that keeps
// running, a restore from it, and the restored VM's first successful exec.
func BenchmarkFork(b *testing.B) {
	image := benchImage(b)
	m := benchManager(b, image)
	src := vmtest.Launch(b, m, vm.LaunchSpec{ImagePath: image})
	firstExec(b, src)
	dir := b.TempDir()
	var fork, paused, restore, handshake, exec []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		snap, err := src.Snapshot(context.Background(), filepath.Join(dir, strconv.Itoa(i)), vm.SnapshotOptions{KeepRunning: true})
		if err != nil {
			b.Fatal(err)
		}
		mach, err := m.Restore(context.Background(), snap, vm.LaunchSpec{})
		if err != nil {
			b.Fatal(err)
		}
		h, e := firstExec(b, mach)
		fork, handshake, exec = append(fork, time.Since(t0).Seconds()), append(handshake, h), append(exec, e)
		paused = append(paused, snap.PausedSeconds)
		restore = append(restore, mach.BootTime().Seconds())
		b.StopTimer()
		stopVM(b, mach)
		if err := snap.Remove(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(median(fork), "s-fork-to-first-exec-median")
	b.ReportMetric(median(paused), "s-source-paused-median")
	b.ReportMetric(median(restore), "s-restore-median")
	b.ReportMetric(median(handshake), "s-handshake-median")
	b.ReportMetric(median(exec), "s-exec-median")
}

// BenchmarkPauseResume reports the median time of a pause (the save of a VM that then stops)
// and of the resume that follows: a restore from that snapshot to the first successful exec.
func BenchmarkPauseResume(b *testing.B) {
	image := benchImage(b)
	m := benchManager(b, image)
	mach := vmtest.Launch(b, m, vm.LaunchSpec{ImagePath: image})
	firstExec(b, mach)
	dir := b.TempDir()
	var pause, resume []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		snap, err := mach.Snapshot(context.Background(), filepath.Join(dir, strconv.Itoa(i)), vm.SnapshotOptions{})
		if err != nil {
			b.Fatal(err)
		}
		pause = append(pause, time.Since(t0).Seconds())
		t1 := time.Now()
		if mach, err = m.Restore(context.Background(), snap, vm.LaunchSpec{ID: mach.ID()}); err != nil {
			b.Fatal(err)
		}
		restored := mach
		b.Cleanup(func() { _ = restored.Stop(context.Background()) }) // after a failure
		firstExec(b, mach)
		resume = append(resume, time.Since(t1).Seconds())
		b.StopTimer()
		if err := snap.Remove(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	stopVM(b, mach)
	b.ReportMetric(median(pause), "s-pause-median")
	b.ReportMetric(median(pause)/(float64(vm.DefaultConfig().MemoryMiB)/1024), "s-pause-per-GiB-median")
	b.ReportMetric(median(resume), "s-resume-to-first-exec-median")
}

// BenchmarkIdleMemory starts $VMTEST_IDLE_VMS (default 10) VMs, from the template or cold,
// lets them idle and reports QEMU's mean resident and proportional set size per VM (from
// /proc/PID/smaps_rollup): PSS splits the pages the VMs share among them.
func BenchmarkIdleMemory(b *testing.B) {
	n := 10
	if s := os.Getenv("VMTEST_IDLE_VMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for _, how := range []string{"template", "cold"} {
		b.Run(how, func(b *testing.B) {
			image := benchImage(b)
			m := benchManager(b, image)
			var pids []int
			for range n {
				mach := vmtest.Launch(b, m, vm.LaunchSpec{ImagePath: image, ColdBoot: how == "cold"})
				firstExec(b, mach)
				st, err := shim.ReadState(mach.Dir())
				if err != nil {
					b.Fatal(err)
				}
				pids = append(pids, st.QEMUPID)
			}
			time.Sleep(5 * time.Second)
			var rss, pss, anon float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rss, pss, anon = 0, 0, 0
				for _, pid := range pids {
					r := smapsRollup(b, pid)
					rss, pss, anon = rss+r["Rss"], pss+r["Pss"], anon+r["Anonymous"]
				}
			}
			b.StopTimer()
			k := float64(len(pids)) * 1024
			b.ReportMetric(rss/k, "rss-MiB-per-vm")
			b.ReportMetric(pss/k, "pss-MiB-per-vm")
			b.ReportMetric(anon/k, "anon-MiB-per-vm")
			b.Logf("mode=%s %s: %d VMs", templatesMode(), how, len(pids))
		})
	}
}

// smapsRollup returns the kB fields of /proc/PID/smaps_rollup.
func smapsRollup(b *testing.B, pid int) map[string]float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64); err == nil {
			out[key] = kb
		}
	}
	return out
}
