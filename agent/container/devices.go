package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// defaultDevices are the nodes every container gets (runc's list).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

var devSymlinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
	{"/proc/kcore", "/dev/core"},
}

// setupDev creates the default and the spec's device nodes in the
// container's /dev, its standard symlinks and /dev/ptmx → pts/ptmx.
func (c *Container) setupDev(extra []specs.LinuxDevice) error {
	for _, d := range append(append([]specs.LinuxDevice{}, defaultDevices...), extra...) {
		if err := c.mknod(d); err != nil {
			return err
		}
	}
	for _, l := range devSymlinks {
		if err := c.symlink(l[0], l[1], false); err != nil {
			return err
		}
	}
	if c.ptmx != "" {
		return c.symlink("pts/ptmx", "/dev/ptmx", true)
	}
	return nil
}

func (c *Container) mknod(d specs.LinuxDevice) error {
	dest, err := cleanDest(d.Path)
	if err != nil {
		return fmt.Errorf("device %q: %w", d.Path, err)
	}
	target, err := SecureJoin(c.Root, dest)
	if err != nil {
		return err
	}
	var kind uint32
	switch d.Type {
	case "c", "u":
		kind = unix.S_IFCHR
	case "b":
		kind = unix.S_IFBLK
	case "p":
		kind = unix.S_IFIFO
	default:
		return fmt.Errorf("device %q: unknown type %q", d.Path, d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("device %q: %w", d.Path, err)
	}
	os.Remove(target) //nolint:errcheck // replace whatever the image had there
	dev := int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
	if err := unix.Mknod(target, kind|perm, dev); err != nil {
		return fmt.Errorf("mknod %q: %w", d.Path, err)
	}
	if err := unix.Chmod(target, perm); err != nil { // mknod honours the umask
		return fmt.Errorf("chmod %q: %w", d.Path, err)
	}
	return c.chownDevice(target, d)
}

func (c *Container) chownDevice(target string, d specs.LinuxDevice) error {
	if d.UID == nil && d.GID == nil {
		return nil
	}
	uid, gid := -1, -1
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := os.Lchown(target, uid, gid); err != nil {
		return fmt.Errorf("chown device %q: %w", d.Path, err)
	}
	return nil
}

// symlink makes link (inside the root) point at to; an existing entry is
// kept unless replace.
func (c *Container) symlink(to, link string, replace bool) error {
	target, err := SecureJoin(c.Root, filepath.Dir(link))
	if err != nil {
		return err
	}
	target = filepath.Join(target, filepath.Base(link))
	if replace {
		os.Remove(target) //nolint:errcheck // a node or a stale link
	}
	if err := os.Symlink(to, target); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("symlink %q -> %q: %w", link, to, err)
	}
	return nil
}
