// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package main

import (
	"testing"

	"github.com/waggle-dev/waggle/hostagent"
)

// TestUpSharesCapacity checks that `waggle up --hosts N` gives each host agent 1/N of the
// machine for every capacity flag left at its default, and what a flag says otherwise.
func TestUpSharesCapacity(t *testing.T) {
	machine := hostagent.HostCapacity()
	tests := []struct {
		args []string
		want hostagent.Capacity
	}{
		{nil, machine},
		{[]string{"--hosts", "2"}, machine.Share(2)},
		{[]string{"--hosts", "2", "--capacity-memory", "4096"}, hostagent.Capacity{MemoryMiB: 4096, CPUs: machine.Share(2).CPUs, MaxEnvironments: machine.Share(2).MaxEnvironments}},
		{[]string{"--hosts", "3", "--capacity-cpus", "6", "--max-environments", "5"}, hostagent.Capacity{MemoryMiB: machine.Share(3).MemoryMiB, CPUs: 6, MaxEnvironments: 5}},
	}
	for _, tt := range tests {
		cmd := newUpCmd()
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		hosts, _ := cmd.Flags().GetInt("hosts")
		c := hostagent.Capacity{}
		c.MemoryMiB, _ = cmd.Flags().GetInt("capacity-memory")
		c.CPUs, _ = cmd.Flags().GetInt("capacity-cpus")
		c.MaxEnvironments, _ = cmd.Flags().GetInt("max-environments")
		shareCapacity(cmd.Flags(), &c, hosts)
		if c != tt.want {
			t.Errorf("waggle up %v: capacity %+v, want %+v", tt.args, c, tt.want)
		}
	}
}
