package container

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

// maskPaths hides linux.maskedPaths: /dev/null is bound over files, an
// empty read-only tmpfs over directories; paths that do not exist are
// skipped.
func (c *Container) maskPaths(paths []string) error {
	for _, p := range paths {
		if c.deferNS(process.NSMountMask, p) {
			continue
		}
		target, err := SecureJoin(c.Root, p)
		if err != nil {
			return fmt.Errorf("masked path %q: %w", p, err)
		}
		st, err := os.Stat(target)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("masked path %q: %w", p, err)
		}
		if st.IsDir() {
			err = mount.Mount("tmpfs", target, "tmpfs", mount.Options{Flags: unix.MS_RDONLY, Data: []string{"size=0"}})
		} else {
			err = mount.Mount(os.DevNull, target, "", mount.Options{Flags: unix.MS_BIND})
		}
		if err != nil {
			return fmt.Errorf("masked path %q: %w", p, err)
		}
		c.mounts = append(c.mounts, target)
	}
	return nil
}

// readonlyPaths makes linux.readonlyPaths read-only with a bind of each
// onto itself, remounted read-only; paths that do not exist are skipped.
func (c *Container) readonlyPaths(paths []string) error {
	for _, p := range paths {
		if c.deferNS(process.NSMountReadonly, p) {
			continue
		}
		target, err := SecureJoin(c.Root, p)
		if err != nil {
			return fmt.Errorf("read-only path %q: %w", p, err)
		}
		if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := unix.Mount(target, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("read-only path %q: bind: %w", p, mount.Errno(err))
		}
		c.mounts = append(c.mounts, target)
		if err := remountReadonly(target); err != nil {
			return fmt.Errorf("read-only path %q: %w", p, err)
		}
	}
	return nil
}
