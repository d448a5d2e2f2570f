package task

import (
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// mayJoin says whether container id of pod p may join the running VM:
// it must be a container of the VM's CRI pod, not a second sandbox.
func (s *service) mayJoin(id string, p *pod) error {
	s.mu.Lock()
	pod, byAPI := s.pod, s.byAPI
	s.mu.Unlock()
	switch {
	case pod == "":
	case p == nil && byAPI:
		// On the sandbox's own connection: containerd sent it here.
		return nil
	case p != nil && !p.isSandbox && p.sandboxID == pod:
		return nil
	}
	return fmt.Errorf("container %s would join a sandbox whose VM already runs, but it is not a container of that CRI pod: %w",
		id, errdefs.ErrFailedPrecondition)
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
