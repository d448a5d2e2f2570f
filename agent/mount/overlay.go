package mount

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// maxMountData is what mount(2) copies of its data argument: one page,
// with the terminating NUL. An overlay of many layers (an image of 100
// layers with container-id paths) needs more, and is mounted through the
// new mount API instead, one lower directory per fsconfig call
// ("lowerdir+", Linux 6.8).
const maxMountData = 4096 - 1

// needsFsconfig says whether an overlay's options overflow mount(2).
func needsFsconfig(fstype, data string) bool { return fstype == "overlay" && len(data) > maxMountData }

// mountOverlayFsconfig mounts an overlay with fsopen/fsconfig/fsmount and
// attaches it at target; flags become mount attributes.
func mountOverlayFsconfig(target string, o Options) error {
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", Errno(err))
	}
	defer unix.Close(fs)
	for _, d := range o.Data {
		if err := overlayOption(fs, d); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("create overlay for %q: %w", target, Errno(err))
	}
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, mountAttrs(o.Flags))
	if err != nil {
		return fmt.Errorf("fsmount overlay for %q: %w", target, Errno(err))
	}
	defer unix.Close(m)
	if err := unix.MoveMount(m, "", -1, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach overlay at %q: %w", target, Errno(err))
	}
	return nil
}

// overlayOption passes one overlay option; a lowerdir list goes one
// directory at a time.
func overlayOption(fs int, opt string) error {
	key, value, hasValue := strings.Cut(opt, "=")
	var err error
	switch {
	case key == "lowerdir":
		for _, dir := range strings.Split(value, ":") {
			if err = unix.FsconfigSetString(fs, "lowerdir+", dir); err != nil {
				return fmt.Errorf("overlay lower directory %q: %w", dir, Errno(err))
			}
		}
		return nil
	case hasValue:
		err = unix.FsconfigSetString(fs, key, value)
	default:
		err = unix.FsconfigSetFlag(fs, key)
	}
	if err != nil {
		return fmt.Errorf("overlay option %q: %w", opt, Errno(err))
	}
	return nil
}

// mountAttrs maps mount(2) flags to fsmount's MOUNT_ATTR_* bits.
func mountAttrs(flags uintptr) int {
	attrs := 0
	for ms, attr := range map[uintptr]int{
		unix.MS_RDONLY: unix.MOUNT_ATTR_RDONLY, unix.MS_NOSUID: unix.MOUNT_ATTR_NOSUID,
		unix.MS_NODEV: unix.MOUNT_ATTR_NODEV, unix.MS_NOEXEC: unix.MOUNT_ATTR_NOEXEC,
		unix.MS_NOATIME: unix.MOUNT_ATTR_NOATIME, unix.MS_STRICTATIME: unix.MOUNT_ATTR_STRICTATIME,
		unix.MS_NODIRATIME: unix.MOUNT_ATTR_NODIRATIME,
	} {
		if flags&ms != 0 {
			attrs |= attr
		}
	}
	return attrs
}
