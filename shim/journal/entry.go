package journal

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/vm"
)

// Kind is what an entry undoes.
type Kind string

const (
	// KindDir is a directory (or a file mount point) the shim made:
	// removed once empty, never recursively, so a failed unmount cannot
	// reach host files through a bind.
	KindDir Kind = "dir"
	// KindMount is a mount point: unmounted with what is below it. The
	// shim mounts in its own mount namespace, so after a crash these are
	// gone with it and only their directories are left.
	KindMount Kind = "mount"
	// KindRunDir is a VM's run directory (sockets, logs): msb's own,
	// removed with its content.
	KindRunDir Kind = "run-dir"
	// KindCgroup is the VM's host cgroup: what still runs in it is
	// killed, then it is removed (only cgroups named msb-*).
	KindCgroup Kind = "cgroup"
	// KindNetNS is a network namespace the shim made, pinned at Path.
	KindNetNS Kind = "netns"
	// KindTap is the VM's tap in the network namespace at Path.
	KindTap Kind = "tap"
	// KindVMM is the VMM and its helpers (virtiofsd): every process whose
	// command line names the run directory at Path, and the process
	// group of Pid once it is known.
	KindVMM Kind = "vmm"
)

// Entry is one change to undo.
type Entry struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"`
	Pid  int    `json:"pid,omitempty"`
}

// Dir is a directory (or file mount point) made at p.
func Dir(p string) Entry { return Entry{Kind: KindDir, Path: p} }

// Mount is a mount at p.
func Mount(p string) Entry { return Entry{Kind: KindMount, Path: p} }

// RunDir is a VM's run directory at p.
func RunDir(p string) Entry { return Entry{Kind: KindRunDir, Path: p} }

// Cgroup is a host cgroup at path p.
func Cgroup(p string) Entry { return Entry{Kind: KindCgroup, Path: p} }

// NetNS is a network namespace pinned at p.
func NetNS(p string) Entry { return Entry{Kind: KindNetNS, Path: p} }

// Tap is the VM's tap in the network namespace pinned at ns.
func Tap(ns string) Entry { return Entry{Kind: KindTap, Path: ns} }

// VMM is the VMM of the run directory runDir, pid 0 while it starts.
func VMM(runDir string, pid int) Entry { return Entry{Kind: KindVMM, Path: runDir, Pid: pid} }

func (e Entry) String() string {
	if e.Pid > 0 {
		return fmt.Sprintf("%s %s (pid %d)", e.Kind, e.Path, e.Pid)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Path)
}

func (e Entry) undo() error {
	switch e.Kind {
	case KindDir:
		if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	case KindMount:
		if err := mount.UnmountAll(e.Path, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", e.Path, err)
		}
	case KindRunDir:
		return os.RemoveAll(e.Path)
	case KindCgroup:
		return vm.RemoveHostCgroup(e.Path)
	case KindNetNS:
		return network.RemoveNamespace(e.Path)
	case KindTap:
		if err := network.DelTap(e.Path); err != nil {
			return fmt.Errorf("remove tap: %w", err)
		}
	case KindVMM:
		killVMM(e.Path, e.Pid)
	default:
		return fmt.Errorf("journal entry of unknown kind %q", e.Kind)
	}
	return nil
}

// killVMM kills the VMM's process group (pid, when known and still the
// VMM), then every process whose command line names the run directory: a
// shim that died while the VM booted recorded no pid, and virtiofsd runs
// beside the VMM.
func killVMM(runDir string, pid int) {
	if pid > 0 && vm.NamesDir(pid, runDir) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	vm.KillNaming(runDir)
}
