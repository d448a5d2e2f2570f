// Package sharedir builds, in the shim's mount namespace, the directory that
// a VM's one virtio-fs share serves (package share: the layout and the
// exports).
//
// A share directory at base is:
//
//	base/w   a small tmpfs, the shim's: one directory per container holding
//	         one mount point per export, and the export bound on it
//	base/r   a read-only bind of base/w in the same peer group: what the
//	         VMM or virtiofsd serves
//
// The guest therefore can create nothing in the share itself (base/r is
// read-only), and reaches only the exports: each is a bind of exactly one
// host file or directory, read-only on the host where its bind is. base/w is
// a shared mount, so an export bound below it after the VM booted (a pod's
// later container) appears below base/r at once, and in the namespace of a
// file server that made its own copy of it as a slave. Everything lives in
// the shim's mount namespace (shim/mountns): the host's mount table never
// shows it, and it goes away with the shim and its children.
package sharedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/shim/mountns"
)

// tmpfsOptions: only mount points live there; the limits bound what a
// shim bug could put in RAM, not what a guest can (it cannot write there).
const tmpfsOptions = "mode=0755,size=1m,nr_inodes=65536"

// Dir is a VM's share directory.
type Dir struct{ base string }

// New names the share directory at base; Create makes it.
func New(base string) *Dir { return &Dir{base: base} }

// Served is the directory the VM's share serves.
func (d *Dir) Served() string { return filepath.Join(d.base, "r") }

func (d *Dir) writable() string { return filepath.Join(d.base, "w") }

// Mounts are the share directory's own mount points, in unmount order, and
// Dirs the directories to remove after them: a record of them, written
// before Create, lets a shim delete undo a crashed shim's work.
func (d *Dir) Mounts() []string { return []string{d.Served(), d.writable()} }

// Dirs are the directories Create makes, deepest first.
func (d *Dir) Dirs() []string { return []string{d.Served(), d.writable(), d.base} }

// Create makes the share directory: the tmpfs at base/w, made shared, and
// its read-only peer at base/r. On error it undoes what it did.
func (d *Dir) Create() (retErr error) {
	for _, p := range []string{d.base, d.writable(), d.Served()} {
		if err := os.Mkdir(p, 0o700); err != nil {
			return fmt.Errorf("share directory: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, d.Destroy())
		}
	}()
	w := d.writable()
	if err := unix.Mount("msb-share", w, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, tmpfsOptions); err != nil {
		return fmt.Errorf("share directory: mount tmpfs on %s: %w", w, err)
	}
	if err := unix.Mount("", w, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("share directory: make %s shared: %w", w, err)
	}
	// A bind of a shared mount is its peer: later mounts below w appear
	// below r. Read-only applies to this mount alone, not to its peers or
	// to the exports bound below.
	if err := unix.Mount(w, d.Served(), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("share directory: bind %s: %w", w, err)
	}
	if err := unix.Mount("", d.Served(), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("share directory: make %s read-only: %w", d.Served(), err)
	}
	return nil
}

// Destroy unmounts the share directory and everything below it and removes
// its directories (never recursively: a failed unmount must not reach host
// files through a bind). It is what a record of Mounts and Dirs does.
func (d *Dir) Destroy() error {
	var errs []error
	for _, m := range d.Mounts() {
		// A mount point already removed (by whoever adopted a handed-over
		// share) is unmounted as well.
		if err := mount.UnmountAll(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	for _, p := range d.Dirs() {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Container is where one container's exports are bound.
type Container struct {
	dir string
}

// Container names container id's directory in the share.
func (d *Dir) Container(id string) *Container {
	return &Container{dir: filepath.Join(d.writable(), id)}
}

// Dir is the container's directory (removed last).
func (c *Container) Dir() string { return c.dir }

// Target is where export e is bound: record it before Bind.
func (c *Container) Target(e share.Export) string { return filepath.Join(c.dir, e.Name) }

// Bind binds export e at Target(e), making the container's directory first
// if need be. The mount point is made before anything is mounted on it.
func (c *Container) Bind(e share.Export) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if err := os.Mkdir(c.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("export %s: %w", e.Name, err)
	}
	target := c.Target(e)
	if err := mountPoint(target, e.Dir); err != nil {
		return fmt.Errorf("export %s: %w", e.Name, err)
	}
	if err := bind(e, target); err != nil {
		return fmt.Errorf("export %s (%s): %w", e.Name, e.Source, err)
	}
	return nil
}

// mountPoint makes an empty directory or file at p, failing if anything is
// there.
func mountPoint(p string, dir bool) error {
	if dir {
		return os.Mkdir(p, 0o755)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// bind attaches at target a copy of e's source with e's attributes.
func bind(e share.Export, target string) error {
	attr := &unix.MountAttr{Propagation: unix.MS_PRIVATE}
	if e.FollowHost {
		// rslave: the host's later mounts below the source reach the copy,
		// and the file server serves them.
		attr.Propagation = unix.MS_SLAVE
	}
	var top *unix.MountAttr
	switch {
	case e.RecursiveReadOnly:
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	case e.ReadOnly:
		top = &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	}
	if e.UIDMap != "" {
		ns, err := mount.GetUsernsFD(e.UIDMap, e.GIDMap)
		if err != nil {
			return fmt.Errorf("user namespace for the idmapped export: %w", err)
		}
		defer ns.Close()
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(ns.Fd())
	}
	return mountns.Bind(e.Source, target, attr, top, !e.Own, e.Recursive)
}
