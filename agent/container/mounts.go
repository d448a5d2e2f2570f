package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

// nsProc is a proc mount the init makes: its destination in the
// container and its target as the agent sees it.
type nsProc struct{ dest, target string }

// underNSProc finds the init-made proc mount that the container path p
// lies in, and returns p's target inside it.
func (c *Container) underNSProc(p string) (string, bool) {
	clean, err := cleanDest(p)
	if err != nil {
		return "", false
	}
	for i := len(c.nsProcs) - 1; i >= 0; i-- {
		m := c.nsProcs[i]
		if rel, ok := strings.CutPrefix(clean, m.dest); ok && (rel == "" || strings.HasPrefix(rel, "/")) {
			return filepath.Join(m.target, rel), true
		}
	}
	return "", false
}

// deferNS records a mask or read-only bind under an init-made proc mount.
func (c *Container) deferNS(kind, p string) bool {
	target, ok := c.underNSProc(p)
	if !ok {
		return false
	}
	c.nsMounts = append(c.nsMounts, process.NSMount{Kind: kind, Target: target})
	c.mounts = append(c.mounts, target)
	return true
}

// mountAll mounts the spec's mounts inside the root, in order; each
// target is resolved inside the root and recorded for the unmount.
func (c *Container) mountAll(ctx context.Context, mounts []ociMount, disks mount.Disks) error {
	for i, m := range mounts {
		err := c.mountOne(m, disks)
		if err != nil && m.Optional && errors.Is(err, unix.ENODEV) {
			log.G(ctx).Warnf("skipping spec mount %d: the guest kernel has no %s file system", i, m.Type)
			continue
		}
		if err != nil {
			return fmt.Errorf("spec mount %d (%s on %q): %w", i, typeName(m), m.Dest, err)
		}
	}
	return nil
}

func typeName(m ociMount) string {
	if m.Opts.IsBind() {
		return "bind"
	}
	return m.Type
}

func (c *Container) mountOne(m ociMount, disks mount.Disks) error {
	target, err := SecureJoin(c.Root, m.Dest)
	if err != nil {
		return err
	}
	if c.pidNS && m.Type == "proc" && !m.Opts.IsBind() {
		// Mounted by the init, inside its PID namespace.
		if err := mount.EnsureTarget(target, false); err != nil {
			return err
		}
		c.nsMounts = append(c.nsMounts, process.NSMount{
			Kind: process.NSMountProc, Target: target, Flags: m.Opts.Flags, Data: m.Opts.DataString()})
		c.nsProcs = append(c.nsProcs, nsProc{dest: m.Dest, target: target})
		c.mounts = append(c.mounts, target)
		return nil
	}
	source := m.Source
	isFile := false
	if m.Opts.IsBind() {
		st, err := os.Stat(source)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		isFile = !st.IsDir()
	} else if source, err = disks.Resolve(source); err != nil {
		return err
	}
	if err := mount.EnsureTarget(target, isFile); err != nil {
		return err
	}
	if err := mount.Mount(source, target, m.Type, m.Opts); err != nil {
		return err
	}
	c.mounts = append(c.mounts, target)
	if m.Type == "devpts" && m.Dest == "/dev/pts" {
		c.ptmx = filepath.Join(target, "ptmx")
	}
	return nil
}

// unmountAll undoes the spec mounts (and the masks and read-only binds) in
// reverse order.
func (c *Container) unmountAll() error {
	var errs []error
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if err := mount.Unmount(c.mounts[i]); err != nil {
			errs = append(errs, err)
		}
	}
	c.mounts = nil
	return errors.Join(errs...)
}

// statFlags are the per-mount flags of path, to keep across a bind remount.
func statFlags(path string) (uintptr, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %q: %w", path, err)
	}
	var flags uintptr
	for st0, ms := range map[int64]uintptr{
		unix.ST_RDONLY: unix.MS_RDONLY, unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV,
		unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME,
		unix.ST_RELATIME: unix.MS_RELATIME, unix.ST_SYNCHRONOUS: unix.MS_SYNCHRONOUS, unix.ST_MANDLOCK: unix.MS_MANDLOCK,
	} {
		if st.Flags&st0 != 0 {
			flags |= ms
		}
	}
	return flags, nil
}

// remountReadonly makes the mount at path read-only, keeping its other
// flags (nosuid, nodev, noexec...).
func remountReadonly(path string) error {
	flags, err := statFlags(path)
	if err != nil {
		return err
	}
	if err := unix.Mount("", path, "", flags|unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("remount %q read-only: %w", path, mount.Errno(err))
	}
	return nil
}
