package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/share"
)

// hostPlan serves a root that is a host overlay (overlayfs snapshotter) or a
// host bind mount (one layer, no parent, native snapshotter) over virtio-fs:
// the shim mounts it at opts.HostRootfs (MountHost) and exports that
// directory as "root"; the guest binds it at the root.
func hostPlan(id string, m *mnt, opts Options) (*Plan, error) {
	if opts.HostRootfs == "" || !filepath.IsAbs(opts.HostRootfs) {
		return nil, m.errorf(errdefs.ErrInvalidArgument,
			"a root mounted on the host needs Options.HostRootfs, the bundle's absolute rootfs directory (got %q)", opts.HostRootfs)
	}
	readOnly := isReadOnly(m.options)
	switch m.typ {
	case "overlay":
		var lower, upper, work bool
		for _, o := range m.options {
			key, value, _ := strings.Cut(o, "=")
			switch key {
			case "lowerdir":
				lower = true
				for _, d := range strings.Split(value, ":") {
					if !filepath.IsAbs(d) {
						return nil, m.errorf(errdefs.ErrInvalidArgument, "lower directory %q is not an absolute host path", d)
					}
				}
			case "upperdir", "workdir":
				if !filepath.IsAbs(value) {
					return nil, m.errorf(errdefs.ErrInvalidArgument, "%s %q is not an absolute host path", key, value)
				}
				upper = upper || key == "upperdir"
				work = work || key == "workdir"
			case "uidmap", "gidmap":
				return nil, m.errorf(errdefs.ErrNotImplemented,
					"idmapped layers (%s) are not supported in the VM: run the container without a user-namespace remapped snapshot", key)
			}
			if strings.HasPrefix(o, "X-") || strings.HasPrefix(o, "x-") {
				return nil, m.errorf(errdefs.ErrNotImplemented, "unknown option %q", o)
			}
		}
		if !lower {
			return nil, m.errorf(errdefs.ErrInvalidArgument, "overlay needs a lowerdir")
		}
		if upper != work {
			return nil, m.errorf(errdefs.ErrInvalidArgument, "overlay needs both upperdir and workdir, or neither")
		}
		readOnly = readOnly || !upper
	case "bind":
		if !filepath.IsAbs(m.source) {
			return nil, m.errorf(errdefs.ErrInvalidArgument, "bind source %q is not an absolute host path", m.source)
		}
		st, err := os.Stat(m.source)
		if err != nil {
			return nil, m.errorf(errdefs.ErrNotFound, "%v", err)
		}
		if !st.IsDir() {
			return nil, m.errorf(errdefs.ErrInvalidArgument, "bind source %s is not a directory", m.source)
		}
		for _, o := range m.options {
			if !knownFSOption("bind", o) {
				return nil, m.errorf(errdefs.ErrNotImplemented, "unknown bind option %q", o)
			}
		}
	}
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	root := RootPath(id)
	exp := share.Export{Name: "root", Source: opts.HostRootfs, Dir: true, Recursive: true, ReadOnly: readOnly, Own: true}
	return &Plan{
		Exports:    []share.Export{exp},
		Mounts:     []*api.Mount{{Type: "bind", Source: share.GuestPath(id, exp.Name), Target: root, Options: []string{"rbind", mode}}},
		Root:       root,
		HostMounts: []mount.Mount{{Type: m.typ, Source: m.source, Options: m.options}},
		HostRootfs: opts.HostRootfs,
	}, nil
}

// MountHost mounts p.HostMounts at p.HostRootfs (creating it) when the root
// is served over virtio-fs; it does nothing for a root on disks. Call it
// before the VM starts; UnmountHost undoes it.
func (p *Plan) MountHost(ctx context.Context) error {
	if len(p.HostMounts) == 0 {
		return nil
	}
	if err := os.MkdirAll(p.HostRootfs, 0o711); err != nil {
		return fmt.Errorf("create rootfs directory: %w", err)
	}
	if err := mount.All(p.HostMounts, p.HostRootfs); err != nil {
		return fmt.Errorf("mount the container root on the host at %s: %w", p.HostRootfs, err)
	}
	log.G(ctx).WithField("rootfs", p.HostRootfs).Debug("mounted rootfs on the host for virtio-fs")
	return nil
}

// UnmountHost unmounts everything at and below dir (the bundle's rootfs),
// detaching lazily what is still busy. It is safe to call when nothing is
// mounted and needs no Plan, so "shim delete" can call it after a crash.
func UnmountHost(dir string) error {
	if dir == "" {
		return nil
	}
	err := mount.UnmountRecursive(dir, 0)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if derr := mount.UnmountRecursive(dir, unix.MNT_DETACH); derr != nil && !errors.Is(derr, os.ErrNotExist) {
		return fmt.Errorf("unmount container root %s: %w (detach: %v)", dir, err, derr)
	}
	return nil
}
