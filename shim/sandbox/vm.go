package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/shim/journal"
	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/portfwd"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/vm"
	"github.com/msb-runtime/msb/vm/phase"
)

// runRoot holds one directory per VM with its sockets and logs, and beside
// it the VM's journal. It is short on purpose: unix socket paths are
// limited to 108 bytes, and bundle paths with a 76-byte container id do
// not fit.
const runRoot = "/run/msb/vm"

// shareRoot holds, per VM, the directory its share serves (sharedir).
const shareRoot = "/run/msb/share"

// AgentTimeout bounds one control call to the agent.
const AgentTimeout = 30 * time.Second

// VM is a Sandbox on a real VM.
type VM struct {
	// runRoot and shareRoot are the constants but in tests.
	runRoot, shareRoot string

	// Set by Boot, then read only.
	vm      *vm.VM
	runDir  string
	journal *journal.Journal
	// link is the sandbox bundle's journal when no container booted the
	// VM: it only names the VM's, for `shim delete`.
	link  *journal.Journal
	share *sharedir.Dir
	netns string
	fwd   *portfwd.Listener

	// stopping is set once the VM is ended on purpose, so its end is not
	// mistaken for a crash; stopMu makes a second Stop wait for the first.
	stopping atomic.Bool
	stopMu   sync.Mutex

	mu      sync.Mutex
	members map[string]*journal.Journal
	// leftClean: the last member left and the agent deleted it (its root
	// unmounted, its writable layer clean); none joined since.
	leftClean bool
}

var _ Sandbox = (*VM)(nil)

// New returns a sandbox whose VM Boot starts.
func New() *VM {
	return &VM{runRoot: runRoot, shareRoot: shareRoot, members: map[string]*journal.Journal{}}
}

// Boot mounts and exports what the first container needs on the host,
// makes the VM's network, boots it, hands it its network and creates the
// first container in it. Each host change is in the journal before it is
// made; on error every one is undone.
func (s *VM) Boot(ctx context.Context, b *BootSpec) (retErr error) {
	if s.runDir != "" {
		return fmt.Errorf("the sandbox's VM was booted already: %w", errdefs.ErrAlreadyExists)
	}
	defer func() {
		if retErr != nil {
			s.stopping.Store(true)
			s.undo(ctx) //nolint:errcheck // logged; the boot's error is the one to return
		}
	}()
	warm, err := s.claimWarm(ctx, b)
	if err != nil {
		return err
	}
	if !warm {
		if err := s.bootCold(ctx, b); err != nil {
			return err
		}
	}
	phase.From(ctx).Begin(ctx, phase.GuestMounts) // the network first
	if err := s.handNetwork(ctx, b); err != nil {
		return err
	}
	if b.First != nil {
		return createInGuest(ctx, s.vm.Agent, b.First)
	}
	return nil
}

// bootCold makes what the VM needs on the host and boots it.
func (s *VM) bootCold(ctx context.Context, b *BootSpec) error {
	if err := s.startJournal(b); err != nil {
		return err
	}
	if b.Host.Cgroup != "" { // vm.Start makes it
		if err := s.journal.Record(journal.Cgroup(b.Host.Cgroup)); err != nil {
			return err
		}
	}
	if err := s.prepareHost(ctx, b); err != nil {
		return err
	}
	return s.start(ctx, b)
}

// startJournal makes the VM's journal, the run directory and the journal
// in the bundle that names the VM's: the first container's own, or a link.
func (s *VM) startJournal(b *BootSpec) error {
	s.runDir = filepath.Join(s.runRoot, bundleHash(b.Bundle))
	if err := os.MkdirAll(s.runRoot, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.runRoot, err)
	}
	j, err := journal.Create(s.runDir+".journal", "")
	if err != nil {
		return err
	}
	s.journal = j
	bj, err := journal.Create(filepath.Join(b.Bundle, journal.FileName), j.Path())
	if err != nil {
		return err
	}
	if b.First != nil {
		s.addMember(b.First.ID, bj)
	} else {
		s.link = bj
	}
	if err := j.Record(journal.RunDir(s.runDir)); err != nil {
		return err
	}
	if err := os.Mkdir(s.runDir, 0o700); err != nil {
		return fmt.Errorf("create VM run directory: %w", err)
	}
	return nil
}

// prepareHost mounts the first container's host root, makes the VM's
// share (when it needs one) with the container's exports, and the VM's
// network.
func (s *VM) prepareHost(ctx context.Context, b *BootSpec) error {
	var first *journal.Journal
	if b.First != nil {
		first = s.member(b.First.ID)
		if err := mountHost(ctx, first, b.First); err != nil {
			return err
		}
	}
	if b.Pod || (b.First != nil && len(b.First.exports()) > 0) {
		if err := s.createShare(); err != nil {
			return err
		}
		if b.First != nil {
			if err := exportAll(first, s.share, b.First); err != nil {
				return err
			}
		}
		if err := s.exportPodFiles(b); err != nil {
			return err
		}
	}
	return s.addNetwork(b)
}

// exportPodFiles writes the pod's files (hostname, hosts, resolv.conf)
// and exports them in the share; for a pod's sandbox only.
func (s *VM) exportPodFiles(b *BootSpec) error {
	if b.PodFiles == nil {
		return nil
	}
	exps, err := s.writePodFiles(b.PodFiles)
	if err != nil {
		return err
	}
	pod := &Member{ID: b.PodFiles.ID, Guest: &oci.Guest{Exports: exps}, Plan: &rootfs.Plan{}}
	return exportAll(s.journal, s.share, pod)
}

// start boots the VM and waits for its agent.
func (s *VM) start(ctx context.Context, b *BootSpec) error {
	opts, err := b.Config.vmOptions()
	if err != nil {
		return err
	}
	var shares []vm.Share
	if s.share != nil {
		shares = []vm.Share{{Tag: share.Tag, Path: s.share.Served()}}
	}
	spec := vm.Spec{
		VCPUs:       b.Size.VCPUs,
		MemoryMiB:   b.Size.MemoryMiB,
		Kernel:      b.Config.kernel(),
		KernelArgs:  kernelArgs(b.Config, shares),
		BootDisk:    b.Config.bootDisk(),
		Shares:      shares,
		AgentSocket: filepath.Join(s.runDir, "agent.sock"),
		ConsoleLog:  filepath.Join(s.runDir, "console.log"),
		Host:        b.Host,
	}
	if b.First != nil {
		spec.Disks = b.First.Plan.Disks
	}
	if s.netns != "" {
		spec.Net = &vm.Net{NetNS: s.netns, Tap: network.Tap}
	}
	// Before it starts: its helpers name the run directory, and so will
	// a VMM whose pid a crash kept from being recorded.
	if err := s.journal.Record(journal.VMM(s.runDir, 0)); err != nil {
		return err
	}
	t0 := time.Now()
	v, err := vm.Start(ctx, opts, spec)
	if err != nil {
		return fmt.Errorf("start VM: %w", err)
	}
	s.vm = v
	log.G(ctx).WithField("backend", v.Backend).WithField("vmm_pid", v.Pid()).
		Infof("VM ready in %s", time.Since(t0).Round(time.Millisecond))
	if err := s.journal.Record(journal.VMM(s.runDir, v.Pid())); err != nil {
		return err
	}
	if b.Pod && b.NetNS != "" {
		s.startPortForward(ctx)
	}
	return nil
}

// createShare makes the VM's share directory, its mounts and directories
// recorded in the order they are made.
func (s *VM) createShare() error {
	sd := sharedir.New(filepath.Join(s.shareRoot, filepath.Base(s.runDir)))
	var es []journal.Entry
	for _, d := range slices.Backward(sd.Dirs()) {
		es = append(es, journal.Dir(d))
	}
	for _, m := range slices.Backward(sd.Mounts()) {
		es = append(es, journal.Mount(m))
	}
	if err := s.journal.Record(es...); err != nil {
		return err
	}
	if err := os.MkdirAll(s.shareRoot, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", s.shareRoot, err)
	}
	if err := sd.Create(); err != nil {
		return err
	}
	s.share = sd
	return nil
}

// kernelArgs has the agent mount the VM's share at boot, if it has one.
func kernelArgs(cfg Config, shares []vm.Share) []string {
	args := slices.Clone(cfg.KernelArgs)
	if len(shares) > 0 {
		args = append(args, share.KernelArg)
	}
	return args
}

// Join has a container join the running VM: its host root is mounted, its
// exports bound into the VM's share (they appear in the guest at once),
// then the agent creates it. On error what was done is undone.
func (s *VM) Join(ctx context.Context, m *Member) (retErr error) {
	if s.vm == nil || s.Ending() {
		return fmt.Errorf("container %s: %w", m.ID, errdefs.ErrFailedPrecondition.WithMessage(ErrNotBooted.Error()))
	}
	if s.share == nil {
		return fmt.Errorf("container %s: the VM has no share to join through: %w", m.ID, errdefs.ErrFailedPrecondition)
	}
	j, err := journal.Create(filepath.Join(m.Bundle, journal.FileName), s.journal.Path())
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			if err := j.Undo(ctx); err != nil {
				log.G(ctx).WithError(err).Warnf("undo the join of %s", m.ID)
			}
		}
	}()
	if err := mountHost(ctx, j, m); err != nil {
		return err
	}
	if err := exportAll(j, s.share, m); err != nil {
		return err
	}
	if err := createInGuest(ctx, s.vm.Agent, m); err != nil {
		return err
	}
	s.addMember(m.ID, j)
	return nil
}

// Leave has the agent delete the container (it kills what is left and
// unmounts the root, so its writable layer is clean), then undoes the
// container's host side. The host side is undone whatever the guest did.
func (s *VM) Leave(ctx context.Context, id string) error {
	s.mu.Lock()
	j := s.members[id]
	delete(s.members, id)
	s.mu.Unlock()
	var err error
	if s.vm != nil && !s.Ending() {
		if _, aerr := s.vm.Agent.DeleteContainer(ctx, &api.DeleteContainerRequest{Id: id}); aerr != nil {
			err = fmt.Errorf("delete container %s in the VM: %w", id, aerr)
		} else {
			s.mu.Lock()
			s.leftClean = len(s.members) == 0
			s.mu.Unlock()
		}
	}
	if j != nil {
		err = errors.Join(err, j.Undo(ctx))
	}
	return err
}

// Stop shuts the VM down (the agent syncs and unmounts every root) and
// undoes everything in the journals. Once the last member left cleanly,
// nothing in the VM is left for anyone to read: the VMM is killed without
// asking the agent, one round trip (and a sync) less.
func (s *VM) Stop(ctx context.Context) error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopping.Swap(true) {
		return nil
	}
	s.mu.Lock()
	clean := s.leftClean
	s.mu.Unlock()
	if s.vm != nil && !clean {
		if err := s.vm.Shutdown(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("VM shutdown")
		}
	}
	return s.undo(ctx)
}

// undo kills the VMM if it still runs and undoes the members' journals,
// then the VM's.
func (s *VM) undo(ctx context.Context) error {
	s.stopPortForward()
	if s.vm != nil {
		s.vm.Kill()
	}
	s.mu.Lock()
	members := s.members
	s.members = map[string]*journal.Journal{}
	s.mu.Unlock()
	var errs []error
	for _, j := range members {
		errs = append(errs, j.Undo(ctx))
	}
	if s.link != nil {
		errs = append(errs, s.link.Undo(ctx))
	}
	if s.journal != nil {
		errs = append(errs, s.journal.Undo(ctx))
	}
	err := errors.Join(errs...)
	if err != nil {
		log.G(ctx).WithError(err).Warn("sandbox cleanup")
	}
	return err
}

// Kill ends the VMM now.
func (s *VM) Kill() {
	if s.vm != nil {
		s.vm.Kill()
	}
}

// Agent is the agent's client.
func (s *VM) Agent() *api.Client { return s.vm.Agent }

// Pid is the VMM's pid.
func (s *VM) Pid() uint32 {
	if s.vm == nil {
		return 0
	}
	return uint32(s.vm.Pid())
}

// Done is closed once the VM ended.
func (s *VM) Done() <-chan struct{} { return s.vm.Done() }

// Err says why the VM ended.
func (s *VM) Err() error { return s.vm.Err() }

// Ending says whether the VM is gone or going.
func (s *VM) Ending() bool {
	select {
	case <-s.vm.Done():
		return true
	case <-s.vm.Agent.Done():
		return true
	default:
		return s.stopping.Load()
	}
}

func (s *VM) addMember(id string, j *journal.Journal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[id] = j
	s.leftClean = false
}

func (s *VM) member(id string) *journal.Journal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[id]
}

func bundleHash(bundle string) string {
	sum := sha256.Sum256([]byte(bundle))
	return hex.EncodeToString(sum[:8])
}
