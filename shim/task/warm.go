package task

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/pool"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/shim/state"
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

// claimWarm returns the sandbox of a VM claimed from the warm pool, with
// the container's root planned on the share, or nil (and one log line
// saying why) when the sandbox boots cold. An error is the container's:
// the VM was destroyed.
func claimWarm(ctx context.Context, cfg Config, b *bootSpec) (*sandbox, error) {
	if !cfg.WarmPool.Enabled() {
		return nil, nil
	}
	lg := log.G(ctx).WithField("container", b.id)
	plan, err := rootfs.Prepare(ctx, b.id, b.rootfs, rootfs.Options{Disks: 0, HostRootfs: b.plan.HostRootfs})
	if err != nil {
		lg.WithError(err).Info("warm pool: booting cold: the root cannot come as files")
		return nil, nil
	}
	pc := cfg.WarmPool.WithDefaults(cfg.DefaultVCPUs, cfg.DefaultMemoryMiB)
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	cl, err := pool.Claim(cctx, pc.Socket, pool.ClaimRequest{ID: b.id, VM: cfg.vmKey(b.size.VCPUs, b.size.MemoryMiB)})
	if err != nil {
		lg.WithError(err).Info("warm pool: booting cold")
		return nil, nil
	}
	defer cl.Close()
	warm := *b
	warm.plan = plan
	warm.plan.Created = append(warm.plan.Created, b.plan.Created...)
	sb, err := adoptWarm(ctx, cfg, &warm, cl)
	if errors.Is(err, errNotAdopted) {
		lg.WithError(err).Warn("warm pool: claimed VM destroyed; booting cold")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	*b = warm
	lg.WithField("vm", cl.ID).WithField("vmm_pid", sb.vm.Pid()).Info("VM claimed from the warm pool")
	return sb, nil
}

// errNotAdopted: the claimed VM could not be made the shim's, and was
// destroyed; nothing of the container's is at fault.
var errNotAdopted = errors.New("not adopted")

// adoptWarm records the claimed VM in the bundle, adopts it into the
// sandbox's host cgroup, acknowledges the claim, and then binds the
// container's root and binds into its share and gives it its network. On
// error nothing is left behind, the VM included.
func adoptWarm(ctx context.Context, cfg Config, b *bootSpec, cl *pool.Claimed) (_ *sandbox, retErr error) {
	sb := &sandbox{runDir: cl.RunDir, bundle: b.bundle, pod: b.pod}
	st := &state.State{RunDir: cl.RunDir, ShimPid: os.Getpid(), Cgroup: b.host.Cgroup, VMMPid: cl.Pids[0]}
	st.ShimStart, _ = state.StartTime(st.ShimPid)
	if len(b.plan.HostMounts) > 0 {
		st.HostMounts = []string{b.plan.HostRootfs}
	}
	sd := sharedir.New(cl.ShareBase)
	st.HostMounts = append(st.HostMounts, sd.Mounts()...)
	st.Dirs = append(st.Dirs, sd.Dirs()...)
	sb.netns = warmNetNS(b, cl, st)
	defer func() {
		if retErr != nil {
			sb.cleanup(ctx)
		}
	}()
	// Recorded before the VM is the shim's: "shim delete" destroys it from
	// then on, the pool until the ack.
	if err := state.Write(b.bundle, st); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotAdopted, err)
	}
	opts, err := cfg.vmOptions()
	if err != nil {
		return nil, err
	}
	spec := cl.Spec
	spec.Host = b.host
	v, err := vm.Adopt(ctx, opts, spec, cl.Handover)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotAdopted, err)
	}
	sb.vm = v
	if err := cl.Ack(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotAdopted, err)
	}
	if err := sd.Adopt(cl.ShareTree); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotAdopted, err)
	}
	sb.share = sd
	if err := b.plan.MountHost(ctx); err != nil {
		return nil, err
	}
	if err := exportAll(b, sd, st); err != nil {
		return nil, err
	}
	if err := takeTap(b, cl, sb.netns); err != nil {
		return nil, err
	}
	if b.pod != nil && b.netns != "" {
		sb.startPortForward(ctx)
	}
	return sb, nil
}

// warmNetNS records where the claimed VM's tap ends up and returns the
// sandbox's network namespace: the one CRI gave, into which the tap
// moves; else, if the sandbox has a network (nerdctl's hook configures the
// VMM's namespace), the VM's own, pinned where the pool pinned it; else
// none (the tap dies with the VM's namespace).
func warmNetNS(b *bootSpec, cl *pool.Claimed, st *state.State) string {
	switch {
	case !b.withNet:
		return ""
	case b.netns != "":
		st.TapIn = b.netns
		return b.netns
	default:
		st.NetNS, st.TapIn = cl.NetNS, cl.NetNS
		return cl.NetNS
	}
}

// takeTap puts the claimed VM's tap where warmNetNS said.
func takeTap(b *bootSpec, cl *pool.Claimed, netns string) error {
	switch {
	case netns == "":
		return nil
	case netns == b.netns:
		return network.MoveTap(cl.NetNSFile, netns)
	default:
		return network.Pin(cl.NetNSFile, netns)
	}
}
