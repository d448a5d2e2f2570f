package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/share"
)

// One helper per kind of guest mount; each is a no-op when the target is
// already a mount point (the kernel mounts devtmpfs itself), and each
// failure names its path and step.

const fsFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME

func mountProc() error { return mountFS("proc", "/proc", "proc", fsFlags, "") }

func mountSys() error { return mountFS("sysfs", "/sys", "sysfs", fsFlags, "") }

func mountDev() error {
	return mountFS("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID|unix.MS_RELATIME, "mode=0755")
}

// mountDevPts mounts a private devpts instance and points /dev/ptmx at it.
func mountDevPts() error {
	if err := mountFS("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_RELATIME,
		"newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	return replaceLink("pts/ptmx", "/dev/ptmx")
}

func mountTmpfs(target, mode string, flags uintptr) error {
	return mountFS("tmpfs", target, "tmpfs", flags, mode)
}

// mountShare mounts the VM's share (package share) when the host gave the
// VM one: its tag is on the kernel command line.
func mountShare(cmdline string) error {
	if tag, ok := share.TagFromCmdline(cmdline); ok {
		return mountFS(tag, share.GuestDir, "virtiofs", 0, "")
	}
	return nil
}

func mountCgroup2() error {
	return mountFS("cgroup2", CgroupRoot, "cgroup2", fsFlags, "")
}

// devLinks makes the /dev symlinks udev would.
func devLinks() error {
	for _, l := range [][2]string{
		{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("boot: symlink %s -> %s: %w", l[1], l[0], err)
		}
	}
	return nil
}

func mountFS(source, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("boot: create %s: %w", target, err)
	}
	if isMountPoint(target) {
		return nil
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("boot: mount %s on %s: %w", fstype, target, mount.Errno(err))
	}
	return nil
}

// isMountPoint says whether path sits on another device than its parent.
func isMountPoint(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func replaceLink(to, link string) error {
	if dest, err := os.Readlink(link); err == nil && dest == to {
		return nil
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("boot: remove %s: %w", link, err)
	}
	if err := os.Symlink(to, link); err != nil {
		return fmt.Errorf("boot: symlink %s -> %s: %w", link, to, err)
	}
	return nil
}

// fixStdio gives PID 1 the console as any of 0-2 the kernel could not
// open (it opens /dev/console before /dev is populated on some roots).
func fixStdio() {
	for fd := 0; fd < 3; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			continue
		}
		con, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			return
		}
		if con != fd {
			unix.Dup3(con, fd, 0) //nolint:errcheck // nothing better to do
			unix.Close(con)
		}
	}
}

// loopbackUp sets lo up: containers share the VM's network.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}
