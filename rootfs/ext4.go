package rootfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// ext2/3/4 superblock magic: 0xEF53 at byte 56 of the superblock, which
// starts at byte 1024.
const (
	extMagicOffset = 1024 + 56
	extMagic       = 0xEF53
)

// minExt4Size is the smallest writable image msb formats: mkfs.ext4 needs a
// few hundred KiB for its metadata; below 1 MiB nothing useful fits.
const minExt4Size = 1 << 20

// ensureExt4 makes sure path is an ext4 image: when it exists it must carry
// the ext superblock magic and is kept as it is (containerd's mkfs transform
// keeps it too: the container may be restarted on the same snapshot). When
// it does not exist, a sparse file of size bytes is formatted under a
// temporary name in the same directory and linked into place only once
// mkfs.ext4 succeeded, so a crash never leaves a half-made image at path.
// created says whether this call made it.
func ensureExt4(ctx context.Context, path string, spec mkfsSpec, mkfs string) (created bool, err error) {
	if _, err := os.Lstat(path); err == nil {
		return false, checkExtImage(path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("writable layer %s: %w", path, err)
	}
	if spec.size < minExt4Size {
		return false, fmt.Errorf("writable layer %s: size %d is below %d bytes: set a larger default_size: %w",
			path, spec.size, minExt4Size, errdefs.ErrInvalidArgument)
	}
	bin, err := findMkfsExt4(mkfs)
	if err != nil {
		return false, err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".msb-"+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return false, fmt.Errorf("writable layer %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) //nolint:errcheck // gone after the link; removed on failure
	err = f.Chmod(0o640)
	if err == nil {
		err = f.Truncate(spec.size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("writable layer %s: create sparse image: %w", path, err)
	}
	args := []string{"-q", "-F"}
	if spec.uuid != "" {
		args = append(args, "-U", spec.uuid)
	}
	args = append(args, tmp)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("writable layer %s: %s %s: %w: %s", path, bin, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Someone else made it meanwhile: theirs is as good.
			log.G(ctx).WithField("path", path).Debug("writable layer appeared while formatting; keeping it")
			return false, checkExtImage(path)
		}
		return false, fmt.Errorf("writable layer %s: %w", path, err)
	}
	return true, nil
}

// checkExtImage verifies that path is a regular file with an ext2/3/4
// superblock.
func checkExtImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("writable layer %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("writable layer %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("writable layer %s is not a regular file (%s): %w", path, st.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	var b [2]byte
	if _, err := f.ReadAt(b[:], extMagicOffset); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("writable layer %s: %w", path, err)
	}
	if binary.LittleEndian.Uint16(b[:]) != extMagic {
		return fmt.Errorf("writable layer %s exists but holds no ext4 file system; "+
			"remove the container's snapshot to start over: %w", path, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func findMkfsExt4(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("mkfs.ext4 not found in $PATH, /usr/sbin or /sbin: install e2fsprogs: %w", errdefs.ErrFailedPrecondition)
}
