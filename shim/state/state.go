// Package state records, in the bundle, what a sandbox left running and
// mounted on the host, so that containerd's "delete" action can clean up
// after a shim that died.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"

	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/vm"
)

const fileName = "msb-state.json"

// State is what must be undone when a sandbox goes away.
type State struct {
	// VMMPid is the VMM's pid (and process group).
	VMMPid int `json:"vmm_pid"`
	// ShimPid is the shim that owns the VM. containerd runs "shim delete"
	// when it closes its connection for a task, also when the shim still
	// serves the pod's other containers: that shim then owns the cleanup.
	ShimPid int `json:"shim_pid,omitempty"`
	// ShimStart is that process's start time (clock ticks after boot), so
	// a pid reused by another shim is not taken for it.
	ShimStart uint64 `json:"shim_start,omitempty"`
	// RunDir holds the VM's sockets and logs; the VMM's command line names
	// it, which is how a pid that was reused is told apart.
	RunDir string `json:"run_dir"`
	// HostMounts are mount points to unmount, in order (a root mounted on
	// the host, exports bound into the VM's share, the share itself). The
	// shim makes them in its own mount namespace, so after a crash they are
	// gone with it and only their directories are left.
	HostMounts []string `json:"host_mounts,omitempty"`
	// TapIn is the network namespace holding the VM's tap, and NetNS the
	// pin of a namespace the shim made itself (removed with it).
	TapIn string `json:"tap_in,omitempty"`
	NetNS string `json:"netns,omitempty"`
	// Cgroup is the VM's host cgroup (vm.HostLimits), recorded before it
	// is made: cleanup kills what still runs in it and removes it.
	Cgroup string `json:"cgroup,omitempty"`
	// Dirs are directories (and file mount points) to remove, in order,
	// once unmounted; only when empty (never recursively: a failed unmount
	// must not reach host files through a bind).
	Dirs   []string `json:"dirs,omitempty"`
	bundle string
}

// Write stores s in the bundle, atomically.
func Write(bundle string, s *State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(bundle, "."+fileName)
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(bundle, fileName))
}

// Read loads the state of the bundle; errdefs.ErrNotFound if there is none.
func Read(bundle string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(bundle, fileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no sandbox state in %s: %w", bundle, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("sandbox state in %s: %w", bundle, err)
	}
	s.bundle = bundle
	return &s, nil
}

// Cleanup kills the VMM if it still runs, unmounts the host mounts and
// removes the run directory and the state file.
func (s *State) Cleanup(ctx context.Context) error {
	var errs []error
	if s.VMMPid > 0 && s.RunDir != "" && ownsPid(s.VMMPid, s.RunDir) {
		_ = syscall.Kill(-s.VMMPid, syscall.SIGKILL)
		waitGone(s.VMMPid, 5*time.Second)
	}
	// A shim that died while the VM booted recorded no pid yet; the VMM
	// and its helpers (virtiofsd) all name the run directory.
	if s.RunDir != "" {
		for _, pid := range pidsNaming(s.RunDir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 5*time.Second)
		}
	}
	if s.Cgroup != "" {
		if err := vm.RemoveHostCgroup(s.Cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if s.TapIn != "" {
		if err := network.DelTap(s.TapIn); err != nil {
			errs = append(errs, fmt.Errorf("remove tap: %w", err))
		}
	}
	if s.NetNS != "" {
		if err := network.RemoveNamespace(s.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range s.HostMounts {
		if err := mount.UnmountAll(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, d := range s.Dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.RunDir != "" {
		if err := os.RemoveAll(s.RunDir); err != nil {
			errs = append(errs, err)
		}
	}
	if s.bundle != "" {
		_ = os.Remove(filepath.Join(s.bundle, fileName))
	}
	return errors.Join(errs...)
}

// ownsPid says whether pid is still our VMM: its command line names the
// run directory.
func ownsPid(pid int, runDir string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && strings.Contains(string(b), runDir)
}

// pidsNaming lists the processes whose command line contains dir.
func pidsNaming(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ownsPid(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitGone(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Split separates a sandbox container's record into its own part (its
// host mounts and their directories) and the VM's (the VMM, run directory,
// network and the mounts and directories in keep: the VM's share). A pod's
// sandbox container can be deleted before the pod's other containers: its
// part is undone then, the VM's when the VM stops.
func (s *State) Split(keep ...string) (own, vm *State) {
	own = &State{}
	vm = &State{VMMPid: s.VMMPid, ShimPid: s.ShimPid, ShimStart: s.ShimStart, RunDir: s.RunDir, Cgroup: s.Cgroup,
		TapIn: s.TapIn, NetNS: s.NetNS, bundle: s.bundle}
	for _, m := range s.HostMounts {
		if slices.Contains(keep, m) {
			vm.HostMounts = append(vm.HostMounts, m)
		} else {
			own.HostMounts = append(own.HostMounts, m)
		}
	}
	for _, d := range s.Dirs {
		if slices.Contains(keep, d) {
			vm.Dirs = append(vm.Dirs, d)
		} else {
			own.Dirs = append(own.Dirs, d)
		}
	}
	return own, vm
}

// OwnerRunning says whether the shim that owns the VM is another process
// that still runs: the recorded pid, started at the recorded time (a pid
// and its start time name one process for the life of the system), and
// not a zombie (a killed shim stays one until containerd reaps it).
func (s *State) OwnerRunning() bool {
	if s.ShimPid <= 0 || s.ShimPid == os.Getpid() {
		return false
	}
	st, err := readStat(s.ShimPid)
	return err == nil && st.state != 'Z' && st.state != 'X' && st.start == s.ShimStart
}

// StartTime is a process's start time in clock ticks after boot.
func StartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.start, err
}

// procStat is what this package reads of /proc/PID/stat: the state (field
// 3) and the start time (field 22).
type procStat struct {
	state byte
	start uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	const stateField, startField = 0, 22 - 3 // f[0] is field 3
	if len(f) <= startField || len(f[stateField]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err := strconv.ParseUint(f[startField], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return procStat{state: f[stateField][0], start: start}, nil
}
