// SPDX-FileCopyrightText: 2026 The waggle authors
// SPDX-License-Identifier: Apache-2.0

package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/waggle-dev/waggle/hostagent/vm/hypervisor"
	"github.com/waggle-dev/waggle/hostagent/vm/vnet"
	"github.com/waggle-dev/waggle/internal/fsutil"
)

// Names of the files in a VM's directory.
const (
	SpecFile    = "spec.json"    // written by the launcher before the shim starts
	StateFile   = "state.json"   // written by the shim
	ControlSock = "control.sock" // control protocol
	SSHSock     = "ssh.sock"     // stream to the guest's SSH port
	NetSock     = "net.sock"     // QEMU's -netdev stream connects here
	ConsoleLog  = "console.log"  // the guest's serial console
	ShimLog     = "shim.log"     // the shim's own log
)

// Spec is what the shim needs to run one VM.
type Spec struct {
	// Backend names the hypervisor backend ("qemu", the only one so far).
	Backend string `json:"backend"`
	// VM is the hypervisor spec. Its Dir and NetSocket are set by the shim, which also
	// creates its Disk (over VM.Backing, DiskMiB large) before it starts the VM.
	VM      hypervisor.Spec `json:"vm"`
	DiskMiB int             `json:"disk_mib"`
	// QEMUBinary and QEMUImgBinary are the QEMU programs, CgroupRoot where VM cgroups go.
	QEMUBinary    string `json:"qemu_binary"`
	QEMUImgBinary string `json:"qemu_img_binary"`
	CgroupRoot    string `json:"cgroup_root,omitempty"`
	// Restore, when set, starts the VM from saved state instead of booting it.
	Restore *Restore `json:"restore,omitempty"`
	// SilenceTimeout kills a booting VM that printed nothing for this long, SilenceCPU one that
	// used this much CPU time without printing (0: no CPU limit); the boot is then retried, up
	// to Attempts boots in all.
	SilenceTimeout time.Duration `json:"silence_timeout"`
	SilenceCPU     time.Duration `json:"silence_cpu"`
	// BootTimeout bounds one boot attempt.
	BootTimeout time.Duration `json:"boot_timeout"`
	Attempts    int           `json:"attempts"`
	// Egress is what the guest may connect to; the zero Policy allows nothing.
	Egress vnet.Policy `json:"egress"`
	// Lease stops the VM when its agent has not renewed it (OpRenew) for this long since the
	// shim started or the last renew, so that no VM outlives its owner for good (0: no lease).
	Lease time.Duration `json:"lease,omitempty"`

	// PackageProxy is the unix socket of the host's package proxy, where the shim relays the
	// guest's connections to it (see pkgproxy.DialVM); empty: there is none, and they are
	// closed at once.
	PackageProxy string `json:"package_proxy,omitempty"`
}

// Restore says where a restored VM comes from and who it becomes.
type Restore struct {
	// State is the saved state file (in the VM directory; removed once the VM runs).
	State string `json:"state"`
	// TemplateMemory says that State leaves the memory out: it comes as an inherited sealed
	// file (descriptor 5), mapped privately.
	TemplateMemory bool `json:"template_memory,omitempty"`
	// Key is the SSH private key the saved guest accepts (a file in the VM directory, removed
	// once the VM has its new identity), HostKey the host key it has.
	Key     string `json:"key"`
	HostKey string `json:"host_key"`
	// AuthorizedKey is the VM's own public key, the only one the guest accepts after its new
	// identity; its host name becomes VM.Name.
	AuthorizedKey string `json:"authorized_key"`
	// Timeout bounds loading the state and the identity request.
	Timeout time.Duration `json:"timeout"`
}

// Phases of a VM, as reported in State.
const (
	PhaseBooting   = "booting"   // cold boot under way
	PhaseRestoring = "restoring" // start from saved state under way
	PhaseReady     = "ready"     // the guest serves SSH
	PhaseSaving    = "saving"    // a snapshot is being taken (the guest is paused)
	PhaseFailed    = "failed"
	PhaseStopped   = "stopped"
)

// State is the shim's state file and its status reply.
type State struct {
	ShimPID  int    `json:"shim_pid"`
	QEMUPID  int    `json:"qemu_pid,omitempty"`
	Phase    string `json:"phase"`
	Error    string `json:"error,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	// HostKey is the guest's SSH host key (authorized_keys format) from its console.
	HostKey string `json:"host_key,omitempty"`
	// BootSeconds is the time from the first QEMU start to the ready marker (or, for a
	// restored VM, to its new identity).
	BootSeconds float64 `json:"boot_seconds,omitempty"`
	// LeaseEnds is when the VM stops itself unless renewed (zero: no lease).
	LeaseEnds time.Time `json:"lease_ends,omitzero"`
	// Snapshot is the last snapshot taken (or being taken), so that a launcher that
	// restarted meanwhile learns how it ended.
	Snapshot *SnapshotState `json:"snapshot,omitempty"`
}

// SnapshotState is the progress of a snapshot.
type SnapshotState struct {
	Dir   string `json:"dir"`
	Done  bool   `json:"done"`
	Error string `json:"error,omitempty"`
}

// WriteSpec writes spec to dir/spec.json (0600).
func WriteSpec(dir string, spec Spec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("write shim spec: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, SpecFile), data, 0o600)
}

// ReadSpec reads dir/spec.json.
func ReadSpec(dir string) (Spec, error) {
	var s Spec
	data, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return s, fmt.Errorf("read shim spec: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("read shim spec: %w", err)
	}
	return s, nil
}

// ReadState reads dir/state.json.
func ReadState(dir string) (State, error) {
	var s State
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return s, fmt.Errorf("read shim state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("read shim state: %w", err)
	}
	return s, nil
}

func writeState(dir string, s State) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, StateFile), data, 0o600)
}
