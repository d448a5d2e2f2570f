package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

// Planner runs mount plans (CreateContainer.rootfs).
type Planner struct {
	Disks Disks
	// Userns makes the user namespaces of idmapped layers; nil refuses
	// them.
	Userns UsernsFunc
}

// Mounted records what a plan mounted, in order.
type Mounted struct {
	targets []string
}

// Root is the last mount's target: the container's root.
func (m *Mounted) Root() string {
	if m == nil || len(m.targets) == 0 {
		return ""
	}
	return m.targets[len(m.targets)-1]
}

// Unmount undoes the plan in reverse order, detaching busy mounts.
func (m *Mounted) Unmount() error {
	var errs []error
	for i := len(m.targets) - 1; i >= 0; i-- {
		if err := Unmount(m.targets[i]); err != nil {
			errs = append(errs, fmt.Errorf("rootfs mount %d: %w", i, err))
		}
	}
	m.targets = nil
	return errors.Join(errs...)
}

// Run executes plan in order. When a step fails, what the plan mounted so
// far is unmounted (in reverse) and the error names the step.
func (p Planner) Run(ctx context.Context, plan []*api.Mount) (*Mounted, error) {
	if len(plan) == 0 {
		return nil, fmt.Errorf("empty rootfs mount plan: %w", errdefs.ErrInvalidArgument)
	}
	m := &Mounted{}
	for i, step := range plan {
		if err := p.step(step); err != nil {
			if uerr := m.Unmount(); uerr != nil {
				log.G(ctx).WithError(uerr).Warn("rollback of rootfs mount plan")
			}
			return nil, fmt.Errorf("rootfs mount %d (type %q, target %q): %w", i, step.GetType(), step.GetTarget(), err)
		}
		m.targets = append(m.targets, step.GetTarget())
		log.G(ctx).Debugf("rootfs mount %d: %s %s on %s", i, step.GetType(), step.GetSource(), step.GetTarget())
	}
	return m, nil
}

func (p Planner) step(step *api.Mount) error {
	target := step.GetTarget()
	if !filepath.IsAbs(target) || filepath.Clean(target) != target {
		return fmt.Errorf("target must be an absolute clean path: %w", errdefs.ErrInvalidArgument)
	}
	if step.GetType() == "" {
		return fmt.Errorf("no file system type: %w", errdefs.ErrInvalidArgument)
	}
	o := ParseOptions(step.GetOptions())
	for _, dir := range append(append([]string{}, step.GetMkdirs()...), o.Mkdirs...) {
		if err := Mkdir(dir); err != nil {
			return err
		}
	}
	fstype := bindType(step.GetType(), &o)
	source, err := p.Disks.Resolve(step.GetSource())
	if err != nil {
		return err
	}
	if o.Data, err = p.Disks.ResolveData(o.Data); err != nil {
		return err
	}
	if err := EnsureTarget(target, o.IsBind() && !isDir(source)); err != nil {
		return err
	}
	idmap, err := TakeIDMap(&o)
	if err != nil {
		return err
	}
	if !idmap.Empty() {
		if fstype != "overlay" {
			return fmt.Errorf("uidmap/gidmap on a %s mount: only overlay layers are idmapped: %w", fstype, errdefs.ErrNotImplemented)
		}
		return MountOverlayIDMapped(target, o, idmap, p.Userns)
	}
	if o.Loop && !o.IsBind() {
		return mountLoop(source, target, fstype, o)
	}
	return Mount(source, target, fstype, o)
}

// mountLoop mounts the image file source through a loop device (an ext4
// writable layer that reached the VM as a file in its share).
func mountLoop(source, target, fstype string, o Options) error {
	dev, err := attachLoop(source, o.Flags&unix.MS_RDONLY != 0)
	if err != nil {
		return err
	}
	defer dev.Close() // the mount holds the device from here on
	return Mount(dev.Name(), target, fstype, o)
}

// bindType folds the "bind" and "rbind" types into the options.
func bindType(fstype string, o *Options) string {
	switch fstype {
	case "bind":
		o.Flags |= unix.MS_BIND
	case "rbind":
		o.Flags |= unix.MS_BIND | unix.MS_REC
	}
	return fstype
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
