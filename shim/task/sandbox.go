package task

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/portfwd"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/shim/state"
	"github.com/msb-runtime/msb/vm"
)

// runRoot holds one directory per sandbox with the VM's sockets and logs.
// It is short on purpose: unix socket paths are limited to 108 bytes, and
// bundle paths with a 76-byte container id do not fit.
const runRoot = "/run/msb/vm"

// sandbox is the VM of one shim and what it holds on the host.
type sandbox struct {
	vm     *vm.VM
	runDir string
	bundle string
	// netns is the network namespace the VMM runs in ("" for none).
	netns string
	// pod is the CRI pod the VM runs, nil for a lone container.
	pod *pod
	// share is the directory the VM's share serves; nil when the VM has
	// none (a lone container without binds, its root all on disks).
	share *sharedir.Dir
	// stopping is set before the shim ends the VM on purpose, so its end
	// is not mistaken for a crash.
	stopping atomic.Bool
	// fwd takes CRI port-forward connections in a pod's namespace.
	fwd *portfwd.Listener
	// vmState is the VM's part of the record once the bundle that held
	// it is gone (a pod's sandbox container deleted before the others).
	vmState *state.State
}

// bootSpec is everything a VM needs besides the runtime configuration.
type bootSpec struct {
	id     string
	bundle string
	size   oci.Size
	host   vm.HostLimits
	guest  *oci.Guest
	plan   *rootfs.Plan
	// withNet gives the VM a NIC in netns, or, when netns is "", in a
	// namespace of its own that hooks configure.
	withNet bool
	netns   string
	pod     *pod
}

// exports are what the container needs in the VM's share: its binds and
// what of its root is not on disks.
func (b *bootSpec) exports() []share.Export {
	return append(append([]share.Export{}, b.guest.Exports...), b.plan.Exports...)
}

// needsShare says whether the VM needs a share: a pod's later containers
// come through it, as does anything a container exports.
func (b *bootSpec) needsShare() bool { return b.pod != nil || len(b.exports()) > 0 }

// startSandbox mounts what the root needs on the host, boots the VM and
// records both in the bundle so a "shim delete" can undo them after a
// crash. On error nothing is left behind.
func startSandbox(ctx context.Context, cfg Config, b *bootSpec) (_ *sandbox, retErr error) {
	sb := &sandbox{runDir: filepath.Join(runRoot, bundleHash(b.bundle)), bundle: b.bundle, pod: b.pod}
	if err := os.MkdirAll(sb.runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create VM run directory: %w", err)
	}
	st := &state.State{RunDir: sb.runDir, ShimPid: os.Getpid(), Cgroup: b.host.Cgroup}
	st.ShimStart, _ = state.StartTime(st.ShimPid)
	if len(b.plan.HostMounts) > 0 {
		st.HostMounts = []string{b.plan.HostRootfs}
	}
	defer func() {
		if retErr != nil {
			sb.cleanup(ctx)
		}
	}()
	// Recorded before anything is mounted or started, so that every
	// later step is undone by "shim delete" if the shim dies midway.
	if err := state.Write(b.bundle, st); err != nil {
		return nil, err
	}
	if err := b.plan.MountHost(ctx); err != nil {
		return nil, err
	}
	var shares []vm.Share
	if b.needsShare() {
		sd, err := createShare(b.bundle, filepath.Join(shareRoot, filepath.Base(sb.runDir)), st)
		if err != nil {
			return nil, err
		}
		sb.share = sd
		if err := exportAll(b, sd, st); err != nil {
			return nil, err
		}
		shares = []vm.Share{{Tag: share.Tag, Path: sd.Served()}}
	}
	if err := sb.addNetwork(b, st); err != nil {
		return nil, err
	}
	opts, err := cfg.vmOptions()
	if err != nil {
		return nil, err
	}
	spec := vm.Spec{
		VCPUs:       b.size.VCPUs,
		MemoryMiB:   b.size.MemoryMiB,
		Kernel:      cfg.kernel(),
		KernelArgs:  kernelArgs(cfg, shares),
		BootDisk:    cfg.bootDisk(),
		Disks:       b.plan.Disks,
		Shares:      shares,
		AgentSocket: filepath.Join(sb.runDir, "agent.sock"),
		ConsoleLog:  filepath.Join(sb.runDir, "console.log"),
		Host:        b.host,
	}
	if sb.netns != "" {
		spec.Net = &vm.Net{NetNS: sb.netns, Tap: network.Tap}
	}
	t0 := time.Now()
	v, err := vm.Start(ctx, opts, spec)
	if err != nil {
		return nil, fmt.Errorf("start VM: %w", err)
	}
	sb.vm = v
	log.G(ctx).WithField("backend", v.Backend).WithField("vmm_pid", v.Pid()).
		Infof("VM ready in %s", time.Since(t0).Round(time.Millisecond))
	st.VMMPid = v.Pid()
	if err := state.Write(b.bundle, st); err != nil {
		return nil, err
	}
	if b.pod != nil && b.netns != "" {
		sb.startPortForward(ctx)
	}
	return sb, nil
}

// shareRoot holds, per VM, the directory its share serves (sharedir).
const shareRoot = "/run/msb/share"

// createShare makes the VM's share directory at base, recording its mounts
// and directories in st first so that they are undone.
func createShare(bundle, base string, st *state.State) (*sharedir.Dir, error) {
	sd := sharedir.New(base)
	st.HostMounts = append(st.HostMounts, sd.Mounts()...)
	st.Dirs = append(st.Dirs, sd.Dirs()...)
	if err := state.Write(bundle, st); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(shareRoot, 0o711); err != nil {
		return nil, fmt.Errorf("create %s: %w", shareRoot, err)
	}
	if err := sd.Create(); err != nil {
		return nil, err
	}
	return sd, nil
}

// kernelArgs has the agent mount the VM's share at boot, if it has one.
func kernelArgs(cfg Config, shares []vm.Share) []string {
	args := slices.Clone(cfg.KernelArgs)
	if len(shares) > 0 {
		args = append(args, share.KernelArg)
	}
	return args
}

// addNetwork makes the network namespace (unless CRI gave one) and the
// tap the VM's NIC uses, recording both first so they are undone.
func (sb *sandbox) addNetwork(b *bootSpec, st *state.State) error {
	if !b.withNet {
		return nil
	}
	ns := b.netns
	if ns == "" {
		ns = filepath.Join(sb.runDir, "netns")
		st.NetNS = ns
	}
	st.TapIn = ns
	if err := state.Write(b.bundle, st); err != nil {
		return err
	}
	if st.NetNS != "" {
		if err := network.NewNamespace(ns); err != nil {
			return err
		}
	}
	if err := network.AddTap(ns); err != nil {
		return err
	}
	sb.netns = ns
	return nil
}

// alive reports whether the VM still runs.
func (sb *sandbox) alive() bool {
	select {
	case <-sb.vm.Done():
		return false
	default:
		return true
	}
}

// stop ends the VM cleanly (the agent syncs and unmounts the writable
// layer first) and removes everything the sandbox left on the host. When
// the guest has already unmounted every container's root (guestClean:
// the last container's delete succeeded), nothing in the VM is left for
// anyone to read, and the VMM is killed without asking the agent.
func (sb *sandbox) stop(ctx context.Context, guestClean bool) {
	sb.stopping.Store(true)
	if sb.vm != nil && !guestClean {
		if err := sb.vm.Shutdown(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("VM shutdown")
		}
	}
	sb.cleanup(ctx)
}

// cleanup kills the VMM if it still runs and removes the host mounts,
// the run directory and the state record.
func (sb *sandbox) cleanup(ctx context.Context) {
	sb.stopping.Store(true)
	sb.stopPortForward()
	if sb.vm != nil {
		sb.vm.Kill()
	}
	st, err := state.Read(sb.bundle)
	if errdefs.IsNotFound(err) && sb.vmState != nil {
		st, err = sb.vmState, nil
	}
	if err == nil {
		err = st.Cleanup(ctx)
	}
	if rerr := os.RemoveAll(sb.runDir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("sandbox cleanup")
	}
}

// releaseSandboxContainer undoes the host mounts of a pod's sandbox
// container deleted while the pod's other containers still run in the VM:
// containerd removes its bundle, and the record in it, right after. The
// VM's part of the record stays in memory until the VM stops.
func (sb *sandbox) releaseSandboxContainer(ctx context.Context) {
	st, err := state.Read(sb.bundle)
	if err != nil {
		log.G(ctx).WithError(err).Warn("sandbox container cleanup")
		return
	}
	var keep []string
	if sb.share != nil {
		keep = append(sb.share.Mounts(), sb.share.Dirs()...)
	}
	own, vm := st.Split(keep...)
	sb.vmState = vm
	if err := own.Cleanup(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("sandbox container cleanup")
	}
	if err := state.Write(sb.bundle, vm); err != nil {
		log.G(ctx).WithError(err).Warn("sandbox container cleanup")
	}
}

// stopSandbox stops the shim's VM, if any; guestClean as sandbox.stop.
func (s *service) stopSandbox(ctx context.Context, guestClean bool) {
	s.mu.Lock()
	sb := s.sandbox
	s.sandbox = nil
	s.mu.Unlock()
	if sb != nil {
		sb.stop(ctx, guestClean)
	}
}

func (s *service) currentSandbox() (*sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox == nil {
		return nil, errors.New("the sandbox has no VM")
	}
	return s.sandbox, nil
}

func (s *service) vmmPid() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sandbox == nil || s.sandbox.vm == nil {
		return 0
	}
	return uint32(s.sandbox.vm.Pid())
}
