package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/pool"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/shim/journal"
	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/vm"
)

// A sandbox whose VM would be exactly like the warm pool's claims an idle
// one from msb-pool instead of booting it (docs/design.md, "Warm VMs"). The
// pooled VM booted with an empty share and a NIC whose tap waits in a
// network namespace of its own; nothing of the container was known then,
// so its root comes entirely as files in the share, like a pod's later
// container's (rootfs.Prepare without disks), and is bound there once the
// VM is the shim's.

// claimTimeout bounds the pool's answers; a pool that does not answer in
// time means a cold boot.
const claimTimeout = 10 * time.Second

// errNotAdopted: the claimed VM could not be made the shim's and was
// destroyed; nothing of the sandbox's is at fault, it boots cold.
var errNotAdopted = errors.New("not adopted")

// claimWarm gives the sandbox a VM from the warm pool, its first
// container's root planned as files, and says whether it did. Without one
// it logs why and leaves the sandbox as it was: it boots cold. An error is
// the sandbox's (Boot undoes what was done, the VM included).
func (s *VM) claimWarm(ctx context.Context, b *BootSpec) (bool, error) {
	if !b.Config.WarmPool.Enabled() {
		return false, nil
	}
	lg := log.G(ctx).WithField("container", sandboxName(b))
	wb := *b
	if b.First != nil {
		f := *b.First
		plan, err := rootfs.Prepare(ctx, f.ID, f.Rootfs, rootfs.Options{Disks: 0, HostRootfs: f.Plan.HostRootfs})
		if err != nil {
			lg.WithError(err).Info("warm pool: booting cold: the root cannot come as files")
			return false, nil
		}
		plan.Created = append(plan.Created, f.Plan.Created...)
		f.Plan = plan
		wb.First = &f
	}
	pc := b.Config.WarmPool.WithDefaults(b.Config.DefaultVCPUs, b.Config.DefaultMemoryMiB)
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	cl, err := pool.Claim(cctx, pc.Socket, pool.ClaimRequest{ID: sandboxName(b), VM: b.Config.vmKey(b.Size.VCPUs, b.Size.MemoryMiB)})
	if err != nil {
		lg.WithError(err).Info("warm pool: booting cold")
		return false, nil
	}
	defer cl.Close()
	if err := s.adoptWarm(ctx, &wb, cl); errors.Is(err, errNotAdopted) {
		lg.WithError(err).Warn("warm pool: the claimed VM is destroyed; booting cold")
		s.reset(ctx)
		return false, nil
	} else if err != nil {
		return true, err
	}
	if b.First != nil {
		*b.First = *wb.First
	}
	lg.WithField("vm", cl.ID).WithField("vmm_pid", s.vm.Pid()).Info("VM claimed from the warm pool")
	return true, nil
}

// HostPids are the VM's processes on the host: the VMM and its helpers
// (for the sandbox API's metrics: an adopted VM's are not the shim's
// descendants).
func (s *VM) HostPids() []int {
	if s.vm == nil {
		return nil
	}
	return s.vm.Pids()
}

func sandboxName(b *BootSpec) string {
	switch {
	case b.First != nil:
		return b.First.ID
	case b.PodFiles != nil:
		return b.PodFiles.ID
	}
	return filepath.Base(b.Bundle)
}

func notAdopted(err error) error { return fmt.Errorf("%w: %w", errNotAdopted, err) }

// adoptWarm records the claimed VM in the journals, adopts it into the
// sandbox's host cgroup and acknowledges the claim (until then the pool
// destroys the VM if anything fails); then it makes the VM's share its own
// and binds there what the first container needs, and puts the tap where
// the sandbox's network is.
func (s *VM) adoptWarm(ctx context.Context, b *BootSpec, cl *pool.Claimed) error {
	if err := s.startWarmJournal(b, cl.RunDir); err != nil {
		return notAdopted(err)
	}
	sd := sharedir.New(cl.ShareBase)
	es := []journal.Entry{journal.VMM(cl.RunDir, cl.Pids[0])}
	if b.Host.Cgroup != "" {
		es = append(es, journal.Cgroup(b.Host.Cgroup))
	}
	for _, d := range slices.Backward(sd.Dirs()) {
		es = append(es, journal.Dir(d))
	}
	for _, m := range slices.Backward(sd.Mounts()) {
		es = append(es, journal.Mount(m))
	}
	netns, nes := warmNetwork(b, cl)
	if err := s.journal.Record(append(es, nes...)...); err != nil {
		return notAdopted(err)
	}
	opts, err := b.Config.vmOptions()
	if err != nil {
		return err
	}
	spec := cl.Spec
	spec.Host = b.Host
	v, err := vm.Adopt(ctx, opts, spec, cl.Handover)
	if err != nil {
		return notAdopted(err)
	}
	s.vm = v
	if err := cl.Ack(ctx); err != nil {
		return notAdopted(err)
	}
	if err := sd.Adopt(cl.ShareTree); err != nil {
		return notAdopted(err)
	}
	s.share = sd
	if err := s.exportWarm(ctx, b); err != nil {
		return err
	}
	if err := takeTap(b, cl, netns); err != nil {
		return err
	}
	s.netns = netns
	if b.Pod && b.NetNS != "" {
		s.startPortForward(ctx)
	}
	return nil
}

// startWarmJournal is startJournal for a claimed VM: its run directory is
// the one the pool made; the journal is where a booted VM's would be.
func (s *VM) startWarmJournal(b *BootSpec, runDir string) error {
	if err := os.MkdirAll(s.runRoot, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.runRoot, err)
	}
	j, err := journal.Create(filepath.Join(s.runRoot, bundleHash(b.Bundle))+".journal", "")
	if err != nil {
		return err
	}
	s.journal, s.runDir = j, runDir
	bj, err := journal.Create(filepath.Join(b.Bundle, journal.FileName), j.Path())
	if err != nil {
		return err
	}
	if b.First != nil {
		s.addMember(b.First.ID, bj)
	} else {
		s.link = bj
	}
	return j.Record(journal.RunDir(runDir))
}

// exportWarm is prepareHost's part for a claimed VM's share: the first
// container's host root and exports, and a pod's files.
func (s *VM) exportWarm(ctx context.Context, b *BootSpec) error {
	if b.First != nil {
		first := s.member(b.First.ID)
		if err := mountHost(ctx, first, b.First); err != nil {
			return err
		}
		if err := exportAll(first, s.share, b.First); err != nil {
			return err
		}
	}
	return s.exportPodFiles(b)
}

// warmNetwork says where the claimed VM's tap ends up, and the journal's
// entries for it: in the network namespace the sandbox was given (CRI's),
// into which it moves; else, for a sandbox with a network (nerdctl's hook
// configures the VMM's namespace), in the VM's own, pinned where the pool
// pinned it; else nowhere the shim keeps (it dies with the VM's
// namespace).
func warmNetwork(b *BootSpec, cl *pool.Claimed) (string, []journal.Entry) {
	switch {
	case !b.Net:
		return "", nil
	case b.NetNS != "":
		return b.NetNS, []journal.Entry{journal.Tap(b.NetNS)}
	default:
		return cl.NetNS, []journal.Entry{journal.NetNS(cl.NetNS), journal.Tap(cl.NetNS)}
	}
}

// takeTap puts the claimed VM's tap where warmNetwork said.
func takeTap(b *BootSpec, cl *pool.Claimed, netns string) error {
	switch {
	case netns == "":
		return nil
	case netns == b.NetNS:
		return network.MoveTap(cl.NetNSFile, netns)
	default:
		return network.Pin(cl.NetNSFile, netns)
	}
}

// reset undoes a claim that failed before the VM was the shim's, so that
// the sandbox boots cold from scratch.
func (s *VM) reset(ctx context.Context) {
	_ = s.undo(ctx)
	s.vm, s.runDir, s.journal, s.link, s.share, s.netns, s.fwd = nil, "", nil, nil, nil, "", nil
	s.stopping.Store(false)
}
