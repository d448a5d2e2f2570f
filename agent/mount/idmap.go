package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// A user-namespace container's root: containerd's snapshotters ask for it
// with "uidmap=" and "gidmap=" options on the overlay (the EROFS
// snapshotter's remap-ids mode). The layers keep the image's ids on disk;
// each layer, the read-only EROFS lowers and the ext4 upper alike, is
// attached through an idmapped mount, so that the image's root is the
// container's root. The overlay is mounted with the container root's fs ids:
// overlayfs creates its work directory and every new file with the
// mounter's credentials, which must map through the idmapped upper (the
// real root does not, and overlayfs would fall back to read-only). What the
// container writes is therefore stored with the image's ids, as if written
// without a user namespace. containerd's own helper idmaps only the lowers
// and leaves the upper's root owned by the real root, where the container's
// root cannot write.

// IDMap is a user namespace's uid and gid mappings.
type IDMap struct {
	UIDs, GIDs []syscall.SysProcIDMap
}

// Empty says whether m maps nothing.
func (m IDMap) Empty() bool { return len(m.UIDs) == 0 && len(m.GIDs) == 0 }

// ParseIDMap parses containerd's "container:host:size[,...]" lists.
func ParseIDMap(uidmap, gidmap string) (IDMap, error) {
	var m IDMap
	var err error
	if m.UIDs, err = parseIDList(uidmap); err != nil {
		return IDMap{}, fmt.Errorf("uidmap %q: %w", uidmap, err)
	}
	if m.GIDs, err = parseIDList(gidmap); err != nil {
		return IDMap{}, fmt.Errorf("gidmap %q: %w", gidmap, err)
	}
	if len(m.UIDs) == 0 || len(m.GIDs) == 0 {
		return IDMap{}, fmt.Errorf("an idmapped mount needs both uidmap and gidmap: %w", errdefs.ErrInvalidArgument)
	}
	return m, nil
}

func parseIDList(s string) ([]syscall.SysProcIDMap, error) {
	if s == "" {
		return nil, nil
	}
	var out []syscall.SysProcIDMap
	for _, e := range strings.Split(s, ",") {
		f := strings.Split(e, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("entry %q is not container:host:size: %w", e, errdefs.ErrInvalidArgument)
		}
		var v [3]int
		for i, x := range f {
			n, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("entry %q: %w", e, errdefs.ErrInvalidArgument)
			}
			v[i] = int(n)
		}
		if v[2] == 0 || uint64(v[0])+uint64(v[2]) > 1<<32 || uint64(v[1])+uint64(v[2]) > 1<<32 {
			return nil, fmt.Errorf("entry %q is empty or out of range: %w", e, errdefs.ErrInvalidArgument)
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: v[0], HostID: v[1], Size: v[2]})
	}
	return out, nil
}

// Strings formats m as containerd's "uidmap=" and "gidmap=" values.
func (m IDMap) Strings() (uidmap, gidmap string) {
	return formatIDList(m.UIDs), formatIDList(m.GIDs)
}

func formatIDList(ms []syscall.SysProcIDMap) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
	}
	return strings.Join(parts, ",")
}

// Root is the host uid and gid of the namespace's root.
func (m IDMap) Root() (uid, gid int, err error) {
	var uok, gok bool
	if uid, uok = toHost(m.UIDs, 0); !uok {
		return 0, 0, fmt.Errorf("uid 0 is not mapped: %w", errdefs.ErrInvalidArgument)
	}
	if gid, gok = toHost(m.GIDs, 0); !gok {
		return 0, 0, fmt.Errorf("gid 0 is not mapped: %w", errdefs.ErrInvalidArgument)
	}
	return uid, gid, nil
}

func toHost(ms []syscall.SysProcIDMap, id int) (int, bool) {
	for _, m := range ms {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return m.HostID + id - m.ContainerID, true
		}
	}
	return 0, false
}

// UsernsFunc returns an open user namespace (its ns/user file) with m.
type UsernsFunc func(m IDMap) (*os.File, error)

// TakeIDMap removes "uidmap=" and "gidmap=" from o's data and returns
// them; an empty IDMap when there are none.
func TakeIDMap(o *Options) (IDMap, error) {
	var uidmap, gidmap string
	var rest []string
	for _, d := range o.Data {
		switch k, v, _ := strings.Cut(d, "="); k {
		case "uidmap":
			uidmap = v
		case "gidmap":
			gidmap = v
		default:
			rest = append(rest, d)
		}
	}
	if uidmap == "" && gidmap == "" {
		return IDMap{}, nil
	}
	o.Data = rest
	return ParseIDMap(uidmap, gidmap)
}

// MountOverlayIDMapped mounts an overlay on target whose layers are seen
// through idmapped mounts of m (see the top of this file). The idmapped
// mounts are made in a directory next to target and detached once the
// overlay holds them.
func MountOverlayIDMapped(target string, o Options, m IDMap, userns UsernsFunc) (err error) {
	uid, gid, err := m.Root()
	if err != nil {
		return err
	}
	if userns == nil {
		return fmt.Errorf("idmapped layers: %w", errdefs.ErrNotImplemented)
	}
	ns, err := userns(m)
	if err != nil {
		return fmt.Errorf("user namespace for idmapped layers: %w", err)
	}
	defer ns.Close()
	tmp, err := os.MkdirTemp(filepath.Dir(target), ".idmap-")
	if err != nil {
		return fmt.Errorf("idmapped layers: %w", err)
	}
	var clones []string
	defer func() {
		for i := len(clones) - 1; i >= 0; i-- {
			unix.Unmount(clones[i], unix.MNT_DETACH) //nolint:errcheck // the overlay holds its own references
		}
		os.RemoveAll(tmp)
	}()
	clone := func(dir string) (string, error) {
		dst := filepath.Join(tmp, strconv.Itoa(len(clones)))
		if err := cloneIDMapped(dir, dst, ns); err != nil {
			return "", err
		}
		clones = append(clones, dst)
		return dst, nil
	}
	if o.Data, err = idmapLayers(o.Data, clone); err != nil {
		return err
	}
	return AsUser(uid, gid, func() error { return Mount("overlay", target, "overlay", o) })
}

// idmapLayers rewrites an overlay's lowerdir, upperdir and workdir through
// clone. The upper and work directories must share a parent, which is
// cloned once: overlayfs wants them on one mount.
func idmapLayers(data []string, clone func(string) (string, error)) ([]string, error) {
	var upper, work string
	for _, d := range data {
		switch k, v, _ := strings.Cut(d, "="); k {
		case "upperdir":
			upper = v
		case "workdir":
			work = v
		}
	}
	var upperParent string
	if upper != "" {
		if filepath.Dir(upper) != filepath.Dir(work) {
			return nil, fmt.Errorf("idmapped overlay: upperdir %s and workdir %s must share a parent: %w", upper, work, errdefs.ErrNotImplemented)
		}
		p, err := clone(filepath.Dir(upper))
		if err != nil {
			return nil, err
		}
		upperParent = p
	}
	out := make([]string, 0, len(data))
	for _, d := range data {
		k, v, _ := strings.Cut(d, "=")
		switch k {
		case "lowerdir":
			dirs := strings.Split(v, ":")
			for i, l := range dirs {
				c, err := clone(l)
				if err != nil {
					return nil, err
				}
				dirs[i] = c
			}
			d = k + "=" + strings.Join(dirs, ":")
		case "upperdir", "workdir":
			d = k + "=" + filepath.Join(upperParent, filepath.Base(v))
		}
		out = append(out, d)
	}
	return out, nil
}

// cloneIDMapped attaches at dst (created) a clone of the mount at src,
// seen through userns's mapping.
func cloneIDMapped(src, dst string, userns *os.File) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	fd, err := unix.OpenTree(-1, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, Errno(err))
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmap the mount of %s (its file system may not support idmapped mounts): %w", src, Errno(err))
	}
	if err := unix.MoveMount(fd, "", -1, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach idmapped mount of %s: %w", src, Errno(err))
	}
	return nil
}

// AsUser runs fn on a thread whose fs uid and gid are uid and gid, with its
// capabilities kept (a non-zero fs uid drops the file capabilities, which
// are put back), so that what fn creates is owned by uid and gid. The
// thread is put back afterwards; one that cannot be is left locked, and
// exits with its goroutine.
func AsUser(uid, gid int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var caps [2]unix.CapUserData
		if err := unix.Capget(&hdr, &caps[0]); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("capget: %w", err)
			return
		}
		prevGID, err := unix.SetfsgidRetGid(gid)
		prevUID := -1
		if err == nil {
			if prevUID, err = unix.SetfsuidRetUid(uid); err == nil {
				err = unix.Capset(&hdr, &caps[0])
			}
		}
		restore := func() error {
			var errs []error
			if prevUID >= 0 {
				_, e := unix.SetfsuidRetUid(prevUID)
				errs = append(errs, e)
			}
			_, e := unix.SetfsgidRetGid(prevGID)
			return errors.Join(append(errs, e, unix.Capset(&hdr, &caps[0]))...)
		}
		if err == nil {
			err = fn()
		}
		if rerr := restore(); rerr != nil {
			done <- errors.Join(err, fmt.Errorf("restore fs ids: %w", rerr))
			return // stays locked
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}
