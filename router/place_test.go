// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package router

import (
	"strings"
	"testing"

	"github.com/waggle-dev/waggle/events"
	"github.com/waggle-dev/waggle/projector"
)

// TestChooseHostNamesWhatRanOut checks placement on hosts as the view shows them: a host with
// room is chosen, and when none has room the error names, per host, the resource that ran out
// (memory, cpus or environment count) with its numbers.
func TestChooseHostNamesWhatRanOut(t *testing.T) {
	host := func(id string, memFree, cpusFree, envs int) *projector.Host {
		return &projector.Host{ID: id, State: projector.HostLive,
			Capacity:  events.HostInfo{MemoryMiB: 4096, CPUs: 8, MaxEnvironments: 8},
			Allocated: events.Resources{MemoryMiB: 4096 - memFree, CPUs: 8 - cpusFree}, EnvCount: envs}
	}
	req := CreateRequest{MemoryMiB: 512, CPUs: 1}
	tests := []struct {
		name    string
		hosts   []*projector.Host
		pending int // MiB this replica is placing on h1
		chosen  string
		want    []string
	}{
		{"room", []*projector.Host{host("h1", 4096, 8, 0)}, 0, "h1", nil},
		{"environment count", []*projector.Host{host("h1", 4096, 0, 8)}, 0, "",
			[]string{"out of environments: 8 of 8 in use"}},
		{"cpus", []*projector.Host{host("h1", 4096, 0, 4)}, 0, "",
			[]string{"needs 512 MiB and 1 cpus", "host h1 is out of cpus: 0 of 8 free"}},
		{"memory", []*projector.Host{host("h1", 256, 8, 1)}, 0, "",
			[]string{"host h1 is out of memory: 256 of 4096 MiB free"}},
		{"memory in flight", []*projector.Host{host("h1", 1024, 8, 1)}, 768, "",
			[]string{"host h1 is out of memory: 256 of 4096 MiB free"}},
		{"each host its own reason", []*projector.Host{host("h2", 4096, 0, 1), host("h1", 100, 8, 1), host("h3", 4096, 8, 0)}, 0, "h3", nil},
		{"several hosts", []*projector.Host{host("h2", 4096, 0, 1), host("h1", 100, 8, 1)}, 0, "",
			[]string{"host h1 is out of memory: 100 of 4096 MiB free; host h2 is out of cpus: 0 of 8 free (of 2 live hosts)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Router{pending: map[string]int{}}
			if tt.pending > 0 {
				r.pending["h1"] = tt.pending
			}
			got, release, err := r.chooseHost(tt.hosts, req, nil)
			if tt.chosen != "" {
				if err != nil || got != tt.chosen {
					t.Fatalf("chose %q, %v; want %s", got, err, tt.chosen)
				}
				release()
				return
			}
			ue, ok := AsUserError(err)
			if !ok || ue.Kind != KindNoCapacity {
				t.Fatalf("chose %q, err %v; want no capacity", got, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(ue.Msg, w) {
					t.Errorf("error %q lacks %q", ue.Msg, w)
				}
			}
		})
	}
}
