// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package vm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waggle-dev/waggle/hostagent/guestclient"
	"github.com/waggle-dev/waggle/hostagent/vm"
	"github.com/waggle-dev/waggle/hostagent/vm/qemu"
	"github.com/waggle-dev/waggle/hostagent/vm/shim"
	"github.com/waggle-dev/waggle/hostagent/vm/vmtest"
)

// TestAutoAccel: "auto" settles on KVM only when the probe boots the kernel under KVM; on
// kvm-pvm hosts (ours) that means TCG, decided within the probe timeout and then cached.
func TestAutoAccel(t *testing.T) {
	m := vmtest.Manager(t, func(c *vm.Config) { c.Accel = "auto" })
	ctx := testCtx(t, time.Minute)
	start := time.Now()
	accel, err := m.Accel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("auto chose %s in %s", accel, time.Since(start))
	probe := qemu.ProbeKVM(ctx, "qemu-system-x86_64", vmtest.Kernel(t).Vmlinux, 3*time.Second, vmtest.QEMUCredential())
	switch {
	case errors.Is(probe, qemu.ErrKVMUnusable) && accel != "tcg":
		t.Errorf("KVM unusable (%v) but auto chose %s", probe, accel)
	case probe == nil && accel != "kvm":
		t.Errorf("KVM works but auto chose %s", accel)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkBoot boots b.N VMs one after the other (run with -benchtime=5x for the median of
// 5) and reports the median time from Launch to a working SSH connection, and from QEMU's
// start to the guest's ready marker.
func BenchmarkBoot(b *testing.B) {
	m := vmtest.Manager(b)
	image := benchImage(b)
	ctx := context.Background()
	accel, err := m.Accel(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var ready, boot []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		mach, err := m.Launch(ctx, vm.LaunchSpec{ImagePath: image})
		if err != nil {
			b.Fatal(err)
		}
		c, err := mach.Connect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ready = append(ready, time.Since(start).Seconds())
		boot = append(boot, mach.BootTime().Seconds())
		c.Close()
		if err := mach.Stop(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(median(ready), "s-to-ssh-median")
	b.ReportMetric(median(boot), "s-qemu-to-ready-median")
	b.Logf("accel=%s ready=%v", accel, ready)
}

// benchImage is the busybox test image, or the built image named by $VMTEST_BENCH_IMAGE
// (e.g. python).
func benchImage(b *testing.B) string {
	if name := os.Getenv("VMTEST_BENCH_IMAGE"); name != "" {
		return vmtest.Image(b, name)
	}
	return vmtest.BusyboxImage(b)
}

// BenchmarkIdleRSS reports the resident memory of QEMU for one idle VM (512 MiB guest), 3 s
// after it became ready.
func BenchmarkIdleRSS(b *testing.B) {
	m := vmtest.Manager(b)
	mach := vmtest.Launch(b, m, vm.LaunchSpec{ImagePath: benchImage(b)})
	st, err := shim.ReadState(mach.Dir())
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	var rss float64
	for i := 0; i < b.N; i++ {
		rss = rssMiB(b, st.QEMUPID)
	}
	b.ReportMetric(rss, "qemu-rss-MiB")
}

func rssMiB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkExecTrue reports the round trip of `true` on a ready VM through the shim's SSH
// stream (p50 and p99; run with -benchtime=100x).
func BenchmarkExecTrue(b *testing.B) {
	m := vmtest.Manager(b)
	mach := vmtest.Launch(b, m, vm.LaunchSpec{ImagePath: benchImage(b)})
	ctx := context.Background()
	c, err := mach.Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var lat []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := c.Exec(ctx, guestclient.ExecRequest{Argv: []string{"true"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("true: %v %+v", err, res)
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "ms-p50")
	b.ReportMetric(percentile(lat, 0.99), "ms-p99")
}
