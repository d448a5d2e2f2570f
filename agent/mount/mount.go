package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// errnoError prints an errno with its name, e.g. "invalid argument
// (EINVAL)", so a failure read on the host names the exact errno.
type errnoError struct{ err error }

func (e errnoError) Error() string {
	var en unix.Errno
	if errors.As(e.err, &en) {
		if name := unix.ErrnoName(en); name != "" {
			return fmt.Sprintf("%v (%s)", e.err, name)
		}
	}
	return e.err.Error()
}

func (e errnoError) Unwrap() error { return e.err }

// Errno wraps err so that its message carries the errno's name.
func Errno(err error) error { return errnoError{err} }

// Mount mounts source on target with the parsed options: one mount(2) for
// the file system or bind, a remount when a bind asks for other flags (the
// kernel ignores them on the first call), and one for the propagation.
func Mount(source, target, fstype string, o Options) error {
	flags := o.Flags
	data := o.DataString()
	kind := fstype
	if o.IsBind() {
		fstype, data, kind = "", "", "bind"
	}
	if needsFsconfig(fstype, data) {
		if err := mountOverlayFsconfig(target, o); err != nil {
			return err
		}
	} else if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s %q on %q: %w", kind, source, target, Errno(err))
	}
	if o.IsBind() && flags&^(unix.MS_BIND|unix.MS_REC|unix.MS_REMOUNT) != 0 {
		re := flags&^unix.MS_REC | unix.MS_REMOUNT | unix.MS_BIND
		if err := unix.Mount("", target, "", re, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH) //nolint:errcheck // best effort
			return fmt.Errorf("remount bind %q with flags %#x: %w", target, re, Errno(err))
		}
	}
	if o.IsBind() && o.RecSet|o.RecClear != 0 {
		attr := &unix.MountAttr{Attr_set: o.RecSet, Attr_clr: o.RecClear}
		if err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, attr); err != nil {
			unix.Unmount(target, unix.MNT_DETACH) //nolint:errcheck // best effort
			return fmt.Errorf("set recursive attributes %#x/%#x on %q: %w", o.RecSet, o.RecClear, target, Errno(err))
		}
	}
	if o.Propagation != 0 {
		if err := unix.Mount("", target, "", o.Propagation, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH) //nolint:errcheck // best effort
			return fmt.Errorf("set propagation %#x on %q: %w", o.Propagation, target, Errno(err))
		}
	}
	return nil
}

// Unmount unmounts target, detaching it lazily when it is busy.
func Unmount(target string) error {
	err := unix.Unmount(target, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // EINVAL: not a mount point (any more)
	}
	if derr := unix.Unmount(target, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
		return fmt.Errorf("unmount %q: %v; detach: %w", target, Errno(err), Errno(derr))
	}
	return nil
}

// Mkdir creates a "path:octal-mode" directory (containerd's
// X-containerd.mkdir.path form) and its missing parents; the mode is set on
// the last one even under a umask. No mode means 0755.
func Mkdir(entry string) error {
	path, modeText, hasMode := strings.Cut(entry, ":")
	mode := os.FileMode(0o755)
	if hasMode {
		m, err := strconv.ParseUint(modeText, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("mkdir %q: bad mode %q: %w", entry, modeText, errdefs.ErrInvalidArgument)
		}
		mode = os.FileMode(m&0o777) | specialBits(m)
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("mkdir %q: path must be absolute: %w", entry, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("mkdir %q: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod %q to %v: %w", path, mode, err)
	}
	return nil
}

func specialBits(m uint64) os.FileMode {
	var mode os.FileMode
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// EnsureTarget creates target as a directory, or as an empty file when the
// bind source isFile, so that something can be mounted on it.
func EnsureTarget(target string, isFile bool) error {
	if _, err := os.Lstat(target); err == nil {
		return nil
	}
	if !isFile {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("create mount point %q: %w", target, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("create parent of mount point %q: %w", target, err)
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create file mount point %q: %w", target, err)
	}
	return f.Close()
}
