package task

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/shim/state"
)

// A CRI pod is one VM. Its sandbox (pause) container boots it; the pod's
// later containers join it. A running VM takes no new devices (libkrun has
// no hotplug), so a later container's layers, writable layer and binds reach
// the guest as exports of the VM's share, bound on the host after boot, and
// the guest mounts them (docs/design.md, "Pods").
const (
	annContainerType = "io.kubernetes.cri.container-type"
	annSandboxID     = "io.kubernetes.cri.sandbox-id"
)

// pod says which CRI pod a container belongs to.
type pod struct {
	sandboxID string
	isSandbox bool
}

func podOf(s *specs.Spec) *pod {
	typ := s.Annotations[annContainerType]
	id := s.Annotations[annSandboxID]
	if (typ != "sandbox" && typ != "container") || id == "" {
		return nil
	}
	return &pod{sandboxID: id, isSandbox: typ == "sandbox"}
}

// joinPod has a pod's later container join the running VM: its exports
// are bound into the VM's share, then the agent creates it. On error what
// was mounted is undone.
func (s *service) joinPod(ctx context.Context, sb *sandbox, r createRequest, b *bootSpec) (retErr error) {
	if b.pod == nil || b.pod.isSandbox || sb.pod == nil || b.pod.sandboxID != sb.pod.sandboxID {
		return fmt.Errorf("container %s would join a sandbox whose VM already runs, but it is not a container of that CRI pod: %w",
			r.id, errdefs.ErrFailedPrecondition)
	}
	if sb.share == nil {
		return fmt.Errorf("container %s: the pod's VM has no share: %w", r.id, errdefs.ErrFailedPrecondition)
	}
	st := &state.State{}
	if len(b.plan.HostMounts) > 0 {
		st.HostMounts = []string{b.plan.HostRootfs}
	}
	defer func() {
		if retErr != nil {
			cleanupState(ctx, r.bundle)
		}
	}()
	if err := state.Write(r.bundle, st); err != nil {
		return err
	}
	if err := b.plan.MountHost(ctx); err != nil {
		return err
	}
	if err := exportAll(b, sb.share, st); err != nil {
		return err
	}
	return createInGuest(ctx, sb, r.id, b)
}

// exportAll binds the container's exports into the VM's share, each mount
// point recorded in st (and the record written) before it is made.
func exportAll(b *bootSpec, sd *sharedir.Dir, st *state.State) error {
	c := sd.Container(b.id)
	exps := b.exports()
	if len(exps) == 0 {
		return nil
	}
	st.Dirs = append([]string{c.Dir()}, st.Dirs...)
	for _, e := range exps {
		target := c.Target(e)
		st.HostMounts = append([]string{target}, st.HostMounts...)
		st.Dirs = append([]string{target}, st.Dirs...)
		if err := state.Write(b.bundle, st); err != nil {
			return err
		}
		if err := c.Bind(e); err != nil {
			return err
		}
		if err := mirrorSubmounts(b, e, target); err != nil {
			return err
		}
	}
	return nil
}

func bundleHash(bundle string) string {
	sum := sha256.Sum256([]byte(bundle))
	return hex.EncodeToString(sum[:8])
}

// cleanupState undoes what a container's state record names.
func cleanupState(ctx context.Context, bundle string) {
	st, err := state.Read(bundle)
	if err == nil {
		err = st.Cleanup(ctx)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		logWarn(ctx, err, "container cleanup")
	}
}

// Pod-level resources CRI puts on the sandbox container (the sum of the
// pod's container limits plus the RuntimeClass overhead).
const (
	annSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	annSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// podSized returns the spec the VM is sized from: for a pod's sandbox, its
// pod-level limits when CRI gave them (the pause container itself has
// none), else the spec as it is.
func podSized(s *specs.Spec, p *pod) *specs.Spec {
	if p == nil || !p.isSandbox {
		return s
	}
	mem, _ := strconv.ParseInt(s.Annotations[annSandboxMemory], 10, 64)
	quota, _ := strconv.ParseInt(s.Annotations[annSandboxCPUQuota], 10, 64)
	period, _ := strconv.ParseUint(s.Annotations[annSandboxCPUPeriod], 10, 64)
	if mem <= 0 && quota <= 0 {
		return s
	}
	sized := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	if mem > 0 {
		sized.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &mem}
	}
	if quota > 0 {
		sized.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota}
		if period > 0 {
			sized.Linux.Resources.CPU.Period = &period
		}
	}
	return sized
}

func logWarn(ctx context.Context, err error, what string) {
	log.G(ctx).WithError(err).Warn(what)
}
