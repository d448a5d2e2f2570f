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

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/portfwd"
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
	// preMounts come first in the container's guest mount plan.
	preMounts []*api.Mount
}

// shares are the host directories the container's root and binds need.
func (b *bootSpec) shares() []vm.Share {
	return append(append([]vm.Share{}, b.guest.Shares...), b.plan.Shares...)
}

// ownRoot says whether sh is the container's root that the shim mounted
// itself (in its own mount namespace), rather than a host directory.
func (b *bootSpec) ownRoot(sh vm.Share) bool {
	return slices.ContainsFunc(b.plan.Shares, func(r vm.Share) bool { return r.Tag == sh.Tag })
}

// mounts is the container's guest mount plan; the last target is its root.
func (b *bootSpec) mounts() []*api.Mount {
	ms := append([]*api.Mount{}, b.preMounts...)
	return append(append(ms, b.guest.Mounts...), b.plan.Mounts...)
}

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
	shares, err := vmShares(b, st, filepath.Join(readOnlyRoot, filepath.Base(sb.runDir)))
	if err != nil {
		return nil, err
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
		KernelArgs:  cfg.KernelArgs,
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

// readOnlyRoot holds, per VM, the read-only binds its read-only shares are
// served from.
const readOnlyRoot = "/run/msb/ro"

// vmShares are the VM's virtio-fs shares: the container's own (read-only
// ones through guardReadOnly's binds in roDir), or for a CRI pod the pod
// directory alone, with the container's shares bound under it.
func vmShares(b *bootSpec, st *state.State, roDir string) ([]vm.Share, error) {
	if b.pod == nil {
		return guardReadOnly(b, roDir, st)
	}
	dir := b.pod.dir()
	st.Dirs = append(st.Dirs, dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the pod directory: %w", err)
	}
	if err := throughPod(b, b.id, st); err != nil {
		return nil, err
	}
	b.preMounts = []*api.Mount{b.pod.mount()}
	return []vm.Share{b.pod.share()}, nil
}

// guardReadOnly serves each read-only share from a bind of it in dir that
// is read-only all the way down: QEMU 7.2's virtiofsd has no read-only
// export, and the guest, which is not trusted, must not be able to write
// where its own mount is read-only. An idmapped share is served from an
// idmapped bind there too, and one that follows the host's mounts from a
// slave copy of the host's tree. Each bind is recorded in st first, so it is
// undone.
func guardReadOnly(b *bootSpec, dir string, st *state.State) ([]vm.Share, error) {
	out := b.shares()
	for i, sh := range out {
		if !sh.ReadOnly && !sh.ReadOnlyTop && sh.UIDMap == "" && !sh.FollowHost {
			continue
		}
		if !slices.Contains(st.Dirs, dir) {
			st.Dirs = append(st.Dirs, dir)
		}
		target := filepath.Join(dir, sh.Tag)
		st.HostMounts = append(st.HostMounts, target)
		st.Dirs = append([]string{target}, st.Dirs...)
		if err := state.Write(b.bundle, st); err != nil {
			return nil, err
		}
		if err := bindHost(sh, target, !b.ownRoot(sh)); err != nil {
			return nil, err
		}
		if err := mirrorSubmounts(b, sh, target); err != nil {
			return nil, err
		}
		out[i].Path = target
	}
	return out, nil
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
// layer first) and removes everything the sandbox left on the host.
func (sb *sandbox) stop(ctx context.Context) {
	sb.stopping.Store(true)
	if sb.vm != nil {
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
	own, vm := st.Split(sb.pod.dir())
	sb.vmState = vm
	if err := own.Cleanup(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("sandbox container cleanup")
	}
	if err := state.Write(sb.bundle, vm); err != nil {
		log.G(ctx).WithError(err).Warn("sandbox container cleanup")
	}
}

// stopSandbox stops the shim's VM, if any.
func (s *service) stopSandbox(ctx context.Context) {
	s.mu.Lock()
	sb := s.sandbox
	s.sandbox = nil
	s.mu.Unlock()
	if sb != nil {
		sb.stop(ctx)
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
