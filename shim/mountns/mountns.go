// Package mountns keeps the shim's mounts out of the host's mount
// namespace.
//
// The shim server runs in a mount namespace of its own (the manager clones
// it with CLONE_NEWNS), made a recursive slave of the host's, so that the
// host's later mounts still reach it where the host's mounts are shared.
// Everything the shim mounts for its VM (the pod directory's binds, the
// read-only and idmapped shares, a pod container's root built on the host,
// the network namespace's bind) lives there, where virtiofsd and the VMM,
// its children, see it, and nowhere else: the host's mount table never
// shows it, a host directory the shim bound stays removable on the host,
// and when the shim and its children are gone the kernel drops all of it.
//
// A bind source must be seen as the host sees it now, submounts made after
// the shim started included (they reach a slave only from shared mounts):
// Clone copies the tree from the host's namespace, whose file the manager
// hands the server as fd 4.
package mountns

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// HostFD is the fd on which the manager passes the host's mount namespace.
const HostFD = 4

var host *os.File

// Setup makes the server's mount namespace a recursive slave of the
// host's and takes the host's namespace file from HostFD. Without one (a
// server started by hand, or in the host's namespace) Clone works in the
// current namespace.
func Setup() error {
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", HostFD))
	if err != nil || !strings.HasPrefix(link, "mnt:[") {
		return nil
	}
	unix.CloseOnExec(HostFD) // not for the VMM or virtiofsd
	f := os.NewFile(HostFD, "host-mnt-ns")
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		f.Close()
		return fmt.Errorf("own mount namespace: %w", err)
	}
	if link == self {
		f.Close() // not in a namespace of its own
		return nil
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		f.Close()
		return fmt.Errorf("make the shim's mount namespace a slave of the host's: %w", err)
	}
	host = f
	return nil
}

// Clone returns a detached copy (open_tree) of the mount at path, with its
// submounts when recursive, as the host's mount namespace has it (fromHost)
// or as the shim's has it.
func Clone(path string, fromHost, recursive bool) (*os.File, error) {
	if host == nil || !fromHost {
		return openTree(path, recursive)
	}
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		// This thread leaves the shim's namespace and is never given back
		// to the Go runtime: it ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- result{err: fmt.Errorf("unshare fs: %w", err)}
			return
		}
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- result{err: fmt.Errorf("enter the host's mount namespace: %w", err)}
			return
		}
		f, err := openTree(path, recursive)
		done <- result{f, err}
	}()
	r := <-done
	return r.f, r.err
}

func openTree(path string, recursive bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(-1, path, flags)
	if err != nil {
		return nil, fmt.Errorf("copy the mount tree at %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Attach sets attr on every mount of the detached tree (from Clone) and
// top on its top mount only, and attaches it at target in the shim's
// namespace.
func Attach(tree *os.File, target string, attr, top *unix.MountAttr) error {
	for _, a := range []struct {
		attr  *unix.MountAttr
		flags uint
	}{{attr, unix.AT_RECURSIVE}, {top, 0}} {
		if a.attr == nil {
			continue
		}
		if err := unix.MountSetattr(int(tree.Fd()), "", uint(unix.AT_EMPTY_PATH)|a.flags, a.attr); err != nil {
			return fmt.Errorf("set the attributes of the copy of %s: %w", tree.Name(), err)
		}
	}
	if err := unix.MoveMount(int(tree.Fd()), "", -1, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the copy of %s at %s: %w", tree.Name(), target, err)
	}
	return nil
}

// Bind attaches at target a copy of the mount (or tree) at source (Clone),
// with attr and top as Attach sets them.
func Bind(source, target string, attr, top *unix.MountAttr, fromHost, recursive bool) error {
	tree, err := Clone(source, fromHost, recursive)
	if err != nil {
		return err
	}
	defer tree.Close()
	return Attach(tree, target, attr, top)
}

// Submount is a mount below a directory: its path relative to it and
// whether it is read-only.
type Submount struct {
	Rel      string
	ReadOnly bool
}

// Submounts lists the mounts below dir in the shim's namespace, parents
// first.
func Submounts(dir string) ([]Submount, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, err
	}
	var subs []Submount
	for _, m := range infos {
		rel, ok := strings.CutPrefix(m.Mountpoint, dir+"/")
		if !ok || rel == "" {
			continue
		}
		subs = append(subs, Submount{Rel: rel, ReadOnly: slices.Contains(strings.Split(m.Options, ","), "ro")})
	}
	return subs, nil
}
