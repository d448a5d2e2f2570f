package task

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/shim/mountns"
	"github.com/msb-runtime/msb/shim/state"
	"github.com/msb-runtime/msb/vm"
)

// A CRI pod is one VM. Its sandbox (pause) container boots it; the pod's
// later containers join it. A running VM takes no new devices (libkrun has
// no hotplug), so every root and bind mount of a pod's containers reaches
// the guest through one virtio-fs share of a per-pod host directory, set up
// at boot: the shim mounts each container's root and binds under it, and
// the guest binds them from the share (docs/design.md, "Pods").
const (
	annContainerType = "io.kubernetes.cri.container-type"
	annSandboxID     = "io.kubernetes.cri.sandbox-id"
	podRoot          = "/run/msb/pods"
	podShareTag      = "msb-pod"
	podGuestDir      = "/run/msb/pod"
	// podMaxShares bounds a pod container's bind-mount directories; they
	// cost no VM device.
	podMaxShares = 64
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

// dir is the pod's host directory, shared into its VM.
func (p *pod) dir() string {
	sum := sha256.Sum256([]byte(p.sandboxID))
	return filepath.Join(podRoot, hex.EncodeToString(sum[:8]))
}

// share is the pod directory as the VM's one virtio-fs share, and mount
// mounts it in the guest (first in the sandbox container's plan).
func (p *pod) share() vm.Share { return vm.Share{Tag: podShareTag, Path: p.dir()} }

func (p *pod) mount() *api.Mount {
	return &api.Mount{Type: "virtiofs", Source: podShareTag, Target: podGuestDir, Options: []string{"rw"}}
}

// throughPod bind-mounts each of a container's shares (its root and bind
// directories) at <pod dir>/<cid>/<tag> on the host, and turns the guest's
// virtiofs mounts of them into binds from the pod share. Every mount point
// is recorded in st first, so it is undone.
func throughPod(b *bootSpec, cid string, st *state.State) error {
	base := filepath.Join(b.pod.dir(), cid)
	st.Dirs = append([]string{base}, st.Dirs...)
	byTag := map[string]vm.Share{}
	for _, sh := range b.shares() {
		target := filepath.Join(base, sh.Tag)
		st.HostMounts = append(st.HostMounts, target)
		st.Dirs = append([]string{target}, st.Dirs...)
		if err := state.Write(b.bundle, st); err != nil {
			return err
		}
		if err := bindHost(sh, target, !b.ownRoot(sh)); err != nil {
			return err
		}
		if err := mirrorSubmounts(b, sh, target); err != nil {
			return err
		}
		byTag[sh.Tag] = sh
	}
	for _, m := range b.mounts() {
		sh, ok := byTag[m.Source]
		if m.Type != "virtiofs" || !ok {
			continue
		}
		mode := "rw"
		if sh.ReadOnly {
			mode = "ro"
		}
		m.Type, m.Source, m.Options = "bind", path.Join(podGuestDir, cid, sh.Tag), []string{"rbind", mode}
	}
	return nil
}

// bindHost binds sh's directory at target, read-only and idmapped as sh
// says: a copy of the host's tree at it (fromHost), or of the shim's own
// mount there (a root it built).
func bindHost(sh vm.Share, target string, fromHost bool) error {
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	attr := &unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if sh.FollowHost {
		// rslave: the host's later mounts below the directory reach the
		// copy, and virtiofsd serves them.
		attr.Propagation = unix.MS_SLAVE
	}
	// The guest, which is not trusted, must not write through virtiofsd
	// where its own mount is read-only: the copy is read-only all the way
	// down, or at the top only, as the share is.
	var top *unix.MountAttr
	switch {
	case sh.ReadOnly:
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	case sh.ReadOnlyTop:
		top = &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	}
	if sh.UIDMap != "" {
		// The guest sees the files with the ids the mappings give them,
		// as runc's idmapped bind shows them to the container.
		ns, err := mount.GetUsernsFD(sh.UIDMap, sh.GIDMap)
		if err != nil {
			return fmt.Errorf("user namespace for the idmapped share %s: %w", sh.Path, err)
		}
		defer ns.Close()
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(ns.Fd())
	}
	if err := mountns.Bind(sh.Path, target, attr, top, fromHost); err != nil {
		return fmt.Errorf("share %s: %w", sh.Path, err)
	}
	return nil
}

// joinPod has a pod's later container join the running VM: its root and
// binds are mounted on the host under the pod share, then the agent
// creates it. On error what was mounted is undone.
func (s *service) joinPod(ctx context.Context, sb *sandbox, r createRequest, b *bootSpec) (retErr error) {
	if b.pod == nil || b.pod.isSandbox || sb.pod == nil || b.pod.sandboxID != sb.pod.sandboxID {
		return fmt.Errorf("container %s would join a sandbox whose VM already runs, but it is not a container of that CRI pod: %w",
			r.id, errdefs.ErrFailedPrecondition)
	}
	// The VM takes no new disks: an EROFS root is built on the host.
	stage := filepath.Join(hostStageRoot, bundleHash(r.bundle))
	plan, err := b.plan.OnHost(r.id, stage, filepath.Join(r.bundle, "rootfs"), rootfs.DefaultSerialPrefix(r.id)+"-rootfs")
	if err != nil {
		return err
	}
	b.plan = plan
	st := &state.State{}
	switch {
	case len(b.plan.HostSteps) > 0:
		st.HostMounts = b.plan.HostTargets()
		st.Dirs = stageDirs(stage, st.HostMounts)
	case len(b.plan.HostMounts) > 0:
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
	if err := throughPod(b, r.id, st); err != nil {
		return err
	}
	return createInGuest(ctx, sb, r.id, b)
}

// hostStageRoot holds, per pod member with an EROFS root, the host mounts
// its root is built from (its layers and writable layer).
const hostStageRoot = "/run/msb/host"

func bundleHash(bundle string) string {
	sum := sha256.Sum256([]byte(bundle))
	return hex.EncodeToString(sum[:8])
}

// stageDirs are the directories under stage that the mount points in
// targets need, deepest first, then stage itself: removed once unmounted.
func stageDirs(stage string, targets []string) []string {
	seen := map[string]bool{}
	var dirs []string
	for _, t := range targets {
		for d := t; strings.HasPrefix(d, stage+"/"); d = filepath.Dir(d) {
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	slices.SortStableFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return append(dirs, stage)
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
