package rootfs

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	// The same "path:mode" rule the agent applies to its plan.
	agentmount "github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/vm"
)

// A running VM takes no new disks, so a pod's later containers cannot have
// their EROFS root on disks like the container that booted the VM. OnHost
// turns such a plan into one the host runs instead: the same mounts, in the
// same order, on the host (the EROFS images file-backed, the ext4 upper on a
// loop device), with the root at HostRootfs, shared into the VM like the
// overlayfs snapshotter's roots.

// HostStep is one mount of a root built on the host.
type HostStep struct {
	Mount  mount.Mount
	Target string
	// Mkdirs are "path:mode" directories made before the mount (containerd's
	// X-containerd.mkdir.path), as the agent does for its plan.
	Mkdirs []string
}

// OnHost returns p as a plan whose root is mounted on the host at
// hostRootfs, its other mounts under stage, and served over virtio-fs with
// the share tag tag. It refuses an ext4 upper that Prepare did not create
// just now: an image the guest may have written is never mounted by the
// host kernel.
func (p *Plan) OnHost(id, stage, hostRootfs, tag string) (*Plan, error) {
	if len(p.Disks) == 0 {
		return p, nil
	}
	if !filepath.IsAbs(stage) || !filepath.IsAbs(hostRootfs) {
		return nil, fmt.Errorf("host root of %s: stage %q and root %q must be absolute: %w", id, stage, hostRootfs, errdefs.ErrInvalidArgument)
	}
	disks := map[string]vm.Disk{}
	readOnly := true
	for _, d := range p.Disks {
		disks[d.ID] = d
		if !d.ReadOnly {
			readOnly = false
			if !slices.Contains(p.Created, d.Path) {
				return nil, fmt.Errorf("container %s: its writable layer %s exists already and may have been written by a guest; "+
					"the host mounts only a layer it has just made: %w", id, d.Path, errdefs.ErrFailedPrecondition)
			}
		}
	}
	r := hostRewriter{guestDir: GuestDir(id), root: p.Root, stage: stage, hostRootfs: hostRootfs, disks: disks}
	steps := make([]HostStep, 0, len(p.Mounts))
	for _, m := range p.Mounts {
		s, err := r.step(m)
		if err != nil {
			return nil, fmt.Errorf("container %s: mount %s on the host: %w", id, m.GetTarget(), err)
		}
		steps = append(steps, s)
	}
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	return &Plan{
		Shares:     []vm.Share{{Tag: tag, Path: hostRootfs, ReadOnly: readOnly}},
		Mounts:     []*api.Mount{{Type: "virtiofs", Source: tag, Target: p.Root, Options: []string{mode}}},
		Root:       p.Root,
		HostRootfs: hostRootfs,
		HostSteps:  steps,
		Created:    p.Created,
		Flattened:  p.Flattened,
	}, nil
}

// hostRewriter maps the guest plan's paths and disks to the host's.
type hostRewriter struct {
	guestDir, root    string
	stage, hostRootfs string
	disks             map[string]vm.Disk
}

func (r hostRewriter) path(p string) (string, error) {
	clean := path.Clean(p)
	switch {
	case clean == r.root:
		return r.hostRootfs, nil
	case strings.HasPrefix(clean, r.root+"/"):
		return filepath.Join(r.hostRootfs, strings.TrimPrefix(clean, r.root+"/")), nil
	case strings.HasPrefix(clean, r.guestDir+"/"):
		return filepath.Join(r.stage, strings.TrimPrefix(clean, r.guestDir+"/")), nil
	}
	return "", fmt.Errorf("path %q is outside the container's directory %s", p, r.guestDir)
}

func (r hostRewriter) disk(source string) (string, error) {
	serial, ok := strings.CutPrefix(source, DiskSource)
	if !ok {
		return "", fmt.Errorf("source %q is not a disk", source)
	}
	d, ok := r.disks[serial]
	if !ok {
		return "", fmt.Errorf("unknown disk %q", serial)
	}
	return d.Path, nil
}

func (r hostRewriter) step(m *api.Mount) (HostStep, error) {
	target, err := r.path(m.GetTarget())
	if err != nil {
		return HostStep{}, err
	}
	s := HostStep{Target: target, Mount: mount.Mount{Type: m.GetType(), Source: m.GetSource()}}
	switch m.GetType() {
	case "ext4":
		s.Mount.Options = []string{"loop"}
		s.Mount.Source, err = r.disk(m.GetSource())
	case "erofs":
		s.Mount.Source, err = r.disk(m.GetSource())
	case "bind":
		s.Mount.Source, err = r.path(m.GetSource())
	case "overlay":
	default:
		err = fmt.Errorf("type %q: %w", m.GetType(), errdefs.ErrNotImplemented)
	}
	if err != nil {
		return HostStep{}, err
	}
	for _, o := range m.GetOptions() {
		o, err := r.option(o)
		if err != nil {
			return HostStep{}, err
		}
		s.Mount.Options = append(s.Mount.Options, o)
	}
	for _, d := range m.GetMkdirs() {
		p, mode, _ := strings.Cut(d, ":")
		hp, err := r.path(p)
		if err != nil {
			return HostStep{}, err
		}
		if mode != "" {
			hp += ":" + mode
		}
		s.Mkdirs = append(s.Mkdirs, hp)
	}
	return s, nil
}

// option rewrites the paths of an overlay directory option and the disks
// of an EROFS device= option.
func (r hostRewriter) option(o string) (string, error) {
	key, value, ok := strings.Cut(o, "=")
	if !ok {
		return o, nil
	}
	switch key {
	case "device":
		p, err := r.disk(value)
		return key + "=" + p, err
	case "lowerdir", "upperdir", "workdir":
		dirs := strings.Split(value, ":")
		for i, d := range dirs {
			p, err := r.path(d)
			if err != nil {
				return "", err
			}
			dirs[i] = p
		}
		return key + "=" + strings.Join(dirs, ":"), nil
	}
	if strings.Contains(value, r.guestDir) || strings.Contains(value, DiskSource) {
		return "", fmt.Errorf("option %q names a guest path or disk", o)
	}
	return o, nil
}

// HostTargets are the mount points of p's host steps in the order they
// must be unmounted (the root first), for the shim's record.
func (p *Plan) HostTargets() []string {
	var ts []string
	for i := len(p.HostSteps) - 1; i >= 0; i-- {
		ts = append(ts, p.HostSteps[i].Target)
	}
	return ts
}

// mountHostStep mounts s; an overlay of a user-namespace container has its
// layers idmapped the way the agent does it in the guest (see
// agent/mount's MountOverlayIDMapped), not containerd's way.
func mountHostStep(s HostStep) error {
	if s.Mount.Type == "overlay" {
		o := agentmount.ParseOptions(s.Mount.Options)
		idmap, err := agentmount.TakeIDMap(&o)
		if err != nil {
			return err
		}
		if !idmap.Empty() {
			return agentmount.MountOverlayIDMapped(s.Target, o, idmap, hostUserns)
		}
	}
	return s.Mount.Mount(s.Target)
}

func hostUserns(m agentmount.IDMap) (*os.File, error) {
	return mount.GetUsernsFD(m.Strings())
}

// mountSteps runs p.HostSteps in order; on failure it unmounts what it
// mounted.
func (p *Plan) mountSteps(ctx context.Context) (retErr error) {
	var done []string
	defer func() {
		if retErr == nil {
			return
		}
		for i := len(done) - 1; i >= 0; i-- {
			if err := mount.UnmountAll(done[i], unix.MNT_DETACH); err != nil {
				log.G(ctx).WithError(err).WithField("target", done[i]).Warn("undo host root mount")
			}
		}
	}()
	for _, s := range p.HostSteps {
		for _, d := range s.Mkdirs {
			if err := agentmount.Mkdir(d); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(s.Target, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", s.Target, err)
		}
		if err := mountHostStep(s); err != nil {
			return fmt.Errorf("mount %s %s on %s: %w", s.Mount.Type, s.Mount.Source, s.Target, err)
		}
		done = append(done, s.Target)
	}
	return nil
}
