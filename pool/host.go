package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/vm"
)

// Host boots the pool's VMs on this host: msb-pool's side. It must run in
// a mount namespace of its own that is a slave of the host's; each VM's
// share lives in a namespace of its own below that (mountns.go).
type Host struct {
	Key  VMKey
	Opts vm.Options
	// CgroupParent holds the VMs' host cgroups (CgroupParent()).
	CgroupParent string
}

// boot boots member id: its record first, then its run directory, share
// (empty: claimants bind into it), network namespace with the tap, and the
// VM in a host cgroup below the pool's. On error nothing is left.
func (h *Host) boot(ctx context.Context, id string) (_ *member, retErr error) {
	m := &member{Member: memberOf(id)}
	rec := &record{ID: id, RunDir: m.RunDir, ShareBase: m.ShareBase, NetNS: filepath.Join(m.RunDir, "netns"),
		Cgroup: path.Join(h.CgroupParent, vm.CgroupPrefix+"pool-"+id)}
	if err := rec.write(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, rec.cleanup())
		}
	}()
	if err := os.MkdirAll(filepath.Dir(m.ShareBase), 0o711); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(m.RunDir, 0o700); err != nil {
		return nil, err
	}
	if err := network.NewNamespace(rec.NetNS); err != nil {
		return nil, err
	}
	if err := network.AddTap(rec.NetNS); err != nil {
		return nil, err
	}
	sd := sharedir.New(m.ShareBase)
	spec := h.spec(m, rec)
	var w *vm.Warm
	ns, err := inNewMountNS(func() error {
		if err := sd.Create(); err != nil {
			return err
		}
		var err error
		w, err = vm.Boot(ctx, h.Opts, spec)
		return err
	})
	if err != nil {
		return nil, err
	}
	m.Pid = w.Pid()
	m.vm = w
	m.res = &hostRes{rec: rec, share: sd, ns: ns}
	spec.Host = vm.HostLimits{}
	m.offer = Offer{ID: id, Spec: spec, RunDir: m.RunDir, ShareBase: m.ShareBase, NetNS: rec.NetNS}
	return m, nil
}

// spec is the VM of member m: the pool's size, kernel and boot disk, an
// empty share, and a NIC.
func (h *Host) spec(m *member, rec *record) vm.Spec {
	return vm.Spec{
		VCPUs:       h.Key.VCPUs,
		MemoryMiB:   h.Key.MemoryMiB,
		Kernel:      h.Key.Kernel,
		KernelArgs:  append(slices.Clone(h.Key.KernelArgs), share.KernelArg),
		BootDisk:    h.Key.BootDisk,
		Shares:      []vm.Share{{Tag: share.Tag, Path: sharedir.New(m.ShareBase).Served()}},
		Net:         &vm.Net{NetNS: rec.NetNS, Tap: network.Tap},
		AgentSocket: filepath.Join(m.RunDir, "agent.sock"),
		ConsoleLog:  filepath.Join(m.RunDir, "console.log"),
		Host:        vm.HostLimits{Cgroup: rec.Cgroup},
	}
}

// hostRes is what a real member holds besides its processes.
type hostRes struct {
	rec   *record
	share *sharedir.Dir
	// ns is the VM's mount namespace, which holds its share.
	ns *os.File
}

func (r *hostRes) files() ([]*os.File, error) {
	var tree *os.File
	err := inMountNS(r.ns, func() (err error) {
		tree, err = r.share.Clone()
		return err
	})
	if err != nil {
		return nil, err
	}
	ns, err := os.Open(r.rec.NetNS)
	if err != nil {
		tree.Close()
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	return []*os.File{tree, ns}, nil
}

// claimed marks the record: a restarted pool never kills the VM.
func (r *hostRes) claimed() error {
	r.rec.Claimed = true
	return r.rec.write()
}

// forget lets go of a claimed VM: the pool's mounts of its share and
// network namespace and its hold on the VM itself (its emptied cgroup),
// then the record.
func (r *hostRes) forget(release func() error) error {
	errs := []error{inMountNS(r.ns, r.share.Forget)}
	r.ns.Close()
	if err := unix.Unmount(r.rec.NetNS, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, fmt.Errorf("unpin %s: %w", r.rec.NetNS, err))
	}
	errs = append(errs, release())
	if err := errors.Join(errs...); err != nil {
		return err // the record stays: a restarted pool removes the cgroup
	}
	return r.rec.remove()
}

// destroy drops the VM's mount namespace, and the share's mounts with it
// (its VMM is gone: nothing else is in it), then what the record names.
func (r *hostRes) destroy() error {
	r.ns.Close()
	return r.rec.cleanup()
}
