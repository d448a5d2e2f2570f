package sharedir

import (
	"errors"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

// A warm VM (package pool) boots with an empty share made by the process
// that boots it, in that process's mount namespace; the shim that claims
// the VM binds its container's exports into it later, in its own. The
// booting process hands over a copy of base/w (Clone): a copy of a shared
// mount is its peer, so once the shim attached it at base/w (Adopt), what
// the shim binds below its copy appears below the booting process's w and
// r, and in the file server's namespace, a slave of theirs. The booting
// process then leaves the peer group and drops its own mounts (Forget):
// the file server's copy stays a slave of the shim's.

// Clone returns a detached copy of the share's writable tmpfs, a peer of
// it, to hand to the process that adopts the share.
func (d *Dir) Clone() (*os.File, error) {
	fd, err := unix.OpenTree(-1, d.writable(), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("share directory: copy %s: %w", d.writable(), err)
	}
	return os.NewFile(uintptr(fd), d.writable()), nil
}

// Adopt attaches tree, a Clone of the share another process made at the
// same base, at base/w in this process's mount namespace. The directories
// exist already (made by Create on the host's file system): Mounts and
// Dirs name what to undo, as for a share Create made.
func (d *Dir) Adopt(tree *os.File) error {
	if err := unix.MoveMount(int(tree.Fd()), "", -1, d.writable(), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("share directory: attach the copy of %s: %w", d.writable(), err)
	}
	return nil
}

// Forget drops this process's mounts of a share it handed over, leaving
// the directories to the process that adopted it. Each mount leaves the
// peer group first: unmounting a peer would unmount the exports below it
// in every other peer too.
func (d *Dir) Forget() error {
	var errs []error
	for _, m := range d.Mounts() {
		if err := unix.Mount("", m, "", unix.MS_PRIVATE, ""); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("share directory: make %s private: %w", m, err))
			continue // unmounting it would reach the other peers
		}
		if err := mount.UnmountAll(m, unix.MNT_DETACH); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
