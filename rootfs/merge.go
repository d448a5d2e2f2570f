package rootfs

// Merging layers that do not fit the VM's disks
//
// Every EROFS layer is one virtio-blk disk, and a VM has at most vm.MaxDisks
// disks and shares besides its boot disk (Options.MaxDisks of them for this
// root). An image with more layers than that must still boot, so the bottom
// layers are merged into one image.
//
// What was considered:
//
//   - fsmeta (mkfs.erofs --aufs --ovlfs-strip=1 meta.erofs blob...): one
//     merged metadata image, but it references the blobs as extra devices,
//     so the VM still needs one disk per blob. No gain.
//   - one carrier disk holding several blobs, mounted file-backed (or on
//     loop devices) in the guest: needs CONFIG_EROFS_FS_BACKED_BY_FILE or
//     loop in libkrunfw's 6.12 kernel, which cannot be verified without
//     booting it.
//   - EROFS flat-device addressing (device table mapped_blkaddr) of several
//     blobs concatenated on one disk: needs a newer guest kernel and
//     erofs-utils than this project ships.
//   - rebuild mode with full data (mkfs.erofs --clean=data blob...):
//     erofs-utils 1.8.6 rejects full-data rebuild for regular files.
//
// What is done: a full flatten on the host, using the kernel's own overlay
// semantics, into a plain EROFS image that any guest kernel mounts:
//
//  1. In a private mount namespace of one locked OS thread (unshare(2)
//     CLONE_NEWNS|CLONE_FS, then / made rprivate), so nothing shows up in
//     the host's mount table and everything vanishes with the thread even
//     if the shim dies, mount every merged EROFS image read-only: file-backed
//     (kernel 6.12+), or on auto-clearing loop devices when the kernel
//     answers ENOTBLK; an fsmeta image gets its device= blobs.
//  2. Stack them read-only with overlayfs, top first. The overlay applies
//     whiteouts and opaque directories exactly as the guest's overlay
//     would; nothing lies below the bottom layer, so consuming them loses
//     nothing.
//  3. mkfs.erofs --quiet [--preserve-mtime] tmp <overlay>: all data, owners,
//     modes, mtimes, xattrs, device nodes and hard links (overlayfs keeps the
//     lower inode numbers of one layer) are kept.
//  4. Mount the result and compare its root listing with the overlay's (a
//     guard against an empty image), then rename it into place.
//
// Only the bottom layers are merged: the top ones keep a disk each, as many
// as fit next to the merged image (block.go chooseMerge). Images that share
// their bottom layers share the merged image.
//
// Cache: <directory of the topmost merged image>/msb-flat-<key>.erofs, key =
// sha256 of a format version and, for each merged image top first, the path,
// size and mtime of it and of its device blobs. The file lives in a snapshot
// directory, so containerd's removal of that snapshot removes it too. A
// flock on the directory serialises builders; the file appears by rename, so
// a file that exists is complete. Cost: the first container of such an image
// copies the merged layers' data once (time and disk space, like an unpacked
// image); the next ones find it. Needs root (CAP_SYS_ADMIN) and mkfs.erofs.
//
// Verified on the host (kernel 6.18, erofs-utils 1.8.6 and 1.5): layers made
// by the EROFS differ's own command (mkfs.erofs --tar=f --aufs) with
// whiteouts, opaque directories, hard links, xattrs and setuid files, and an
// fsmeta with device= blobs, flatten to an image whose tree equals the
// overlay of the originals (merge_test.go).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

const (
	// maxFlattenLayers is overlayfs's limit of lower layers (OVL_MAX_STACK).
	maxFlattenLayers = 500
	flatPrefix       = "msb-flat-"
	flatVersion      = "msb-flat-v1"
	// DefaultMkfsErofs is where the project installs erofs-utils.
	DefaultMkfsErofs = "/opt/msb/erofs-utils/bin/mkfs.erofs"
)

// flatCachePath is where the merged image of units is cached.
func flatCachePath(units []*unit) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, flatVersion)
	for _, u := range units {
		fmt.Fprintln(h, "image")
		for _, f := range append([]string{u.blob}, u.devices...) {
			st, err := os.Stat(f)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s\x00%d\x00%d\n", f, st.Size(), st.ModTime().UnixNano())
		}
	}
	key := hex.EncodeToString(h.Sum(nil))[:32]
	return filepath.Join(filepath.Dir(units[0].blob), flatPrefix+key+".erofs"), nil
}

func isCached(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

// ensureFlat returns the merged image of units (top first), building it
// when it is not cached yet.
func ensureFlat(ctx context.Context, units []*unit, mkfs string) (string, error) {
	out, err := flatCachePath(units)
	if err != nil {
		return "", fmt.Errorf("flatten %d layers: %w", len(units), err)
	}
	if isCached(out) {
		log.G(ctx).WithField("image", out).Debug("using cached flattened layers")
		return out, nil
	}
	bin, err := findMkfsErofs(mkfs)
	if err != nil {
		return "", fmt.Errorf("the bottom %d layers must be flattened to fit the VM's disks: %w", len(units), err)
	}
	dir := filepath.Dir(out)
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	if isCached(out) {
		return out, nil
	}
	start := time.Now()
	if err := buildFlat(ctx, units, dir, out, bin); err != nil {
		return "", fmt.Errorf("flatten the bottom %d layers into %s: %w", len(units), out, err)
	}
	log.G(ctx).WithField("image", out).WithField("layers", len(units)).WithField("took", time.Since(start)).
		Info("flattened layers that do not fit the VM's disks")
	return out, nil
}

func buildFlat(ctx context.Context, units []*unit, dir, out, bin string) (retErr error) {
	f, err := os.CreateTemp(dir, "."+flatPrefix+"*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if retErr != nil {
			os.Remove(tmp) //nolint:errcheck // best effort
		}
	}()
	work, err := os.MkdirTemp(dir, "."+flatPrefix+"*.d")
	if err != nil {
		return err
	}
	// The mounts live only in the private namespace: here these are plain
	// directories.
	defer os.RemoveAll(work) //nolint:errcheck // best effort
	if err := inPrivateMountNS(func() error { return flattenInNS(ctx, units, work, tmp, bin) }); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	return syncFile(dir)
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// lockDir takes an exclusive flock on dir, waiting for ctx.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another flatten in %s: %w", dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// inPrivateMountNS runs fn on a locked OS thread in a private mount
// namespace of its own. The thread is never unlocked: the runtime ends it
// with the goroutine, and the namespace (and any mount left in it) with it.
// Processes fn starts inherit the namespace: Go forks on the calling thread.
func inPrivateMountNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare the mount namespace (flattening needs CAP_SYS_ADMIN): %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make the private mount namespace rprivate: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// flattenInNS runs in the private namespace (see inPrivateMountNS).
func flattenInNS(ctx context.Context, units []*unit, work, out, bin string) error {
	// CLONE_FS was unshared: the working directory is this thread's own. It
	// keeps overlayfs's lowerdir short (relative names), well inside the
	// one page mount(2) takes even for hundreds of layers.
	if err := unix.Chdir(work); err != nil {
		return err
	}
	var mounted []string
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			unix.Unmount(mounted[i], unix.MNT_DETACH) //nolint:errcheck // the namespace goes anyway
		}
	}()
	lowers := make([]string, len(units))
	for i, u := range units {
		lowers[i] = strconv.Itoa(i)
		mp := filepath.Join(work, lowers[i])
		if err := os.Mkdir(mp, 0o700); err != nil {
			return err
		}
		if err := mountErofs(u.blob, u.devices, mp); err != nil {
			return fmt.Errorf("mount layer %s: %w", u.blob, err)
		}
		mounted = append(mounted, mp)
	}
	src := filepath.Join(work, lowers[0])
	if len(units) > 1 {
		src = filepath.Join(work, "merged")
		if err := os.Mkdir(src, 0o700); err != nil {
			return err
		}
		data := "lowerdir=" + strings.Join(lowers, ":")
		if err := unix.Mount("overlay", src, "overlay", unix.MS_RDONLY, data); err != nil {
			return fmt.Errorf("mount the overlay of %d layers: %w", len(units), err)
		}
		mounted = append(mounted, src)
	}
	args := []string{"--quiet"}
	if mkfsHas(bin, "--preserve-mtime") {
		args = append(args, "--preserve-mtime")
	}
	args = append(args, out, src)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = work
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return verifyFlat(out, src, filepath.Join(work, "check"))
}

// verifyFlat mounts img at mp and checks that its root lists the same names
// as src.
func verifyFlat(img, src, mp string) error {
	want, err := rootNames(src)
	if err != nil {
		return err
	}
	if err := os.Mkdir(mp, 0o700); err != nil {
		return err
	}
	if err := mountErofs(img, nil, mp); err != nil {
		return fmt.Errorf("mount the flattened image: %w", err)
	}
	defer unix.Unmount(mp, unix.MNT_DETACH) //nolint:errcheck // the namespace goes anyway
	got, err := rootNames(mp)
	if err != nil {
		return err
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("the flattened image's root lists %d entries %q, the merged layers %d %q",
			len(got), got, len(want), want)
	}
	return nil
}

func rootNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

const mountFlags = unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID

// loopOnly makes mountErofs skip the file-backed attempt (tests of the
// fallback for kernels before 6.12).
var loopOnly = false

// mountErofs mounts an EROFS image file (with its extra device blobs)
// read-only at mp: file-backed when the kernel can, else on loop devices.
func mountErofs(img string, devices []string, mp string) error {
	data := func(devs []string) string {
		var opts []string
		for _, d := range devs {
			opts = append(opts, "device="+d)
		}
		return strings.Join(opts, ",")
	}
	if !loopOnly {
		err := unix.Mount(img, mp, "erofs", mountFlags, data(devices))
		if !errors.Is(err, unix.ENOTBLK) {
			return err
		}
	}
	// A kernel without file-backed EROFS (before 6.12). The loop devices
	// clear themselves once unmounted and closed.
	var loops []*os.File
	defer func() {
		for _, l := range loops {
			l.Close()
		}
	}()
	attach := func(p string) (string, error) {
		l, err := mount.SetupLoop(p, mount.LoopParams{Readonly: true, Autoclear: true})
		if err != nil {
			return "", fmt.Errorf("loop device for %s: %w", p, err)
		}
		loops = append(loops, l)
		return l.Name(), nil
	}
	dev, err := attach(img)
	if err != nil {
		return err
	}
	var devs []string
	for _, d := range devices {
		ld, err := attach(d)
		if err != nil {
			return err
		}
		devs = append(devs, ld)
	}
	return unix.Mount(dev, mp, "erofs", mountFlags, data(devs))
}

var mkfsHelp sync.Map // binary path → its --help output

// mkfsHas says whether mkfs.erofs at bin lists option in its --help.
func mkfsHas(bin, option string) bool {
	v, ok := mkfsHelp.Load(bin)
	if !ok {
		// --help exits 0 on recent versions and 1 on old ones: only the
		// text matters.
		out, _ := exec.Command(bin, "--help").CombinedOutput()
		v, _ = mkfsHelp.LoadOrStore(bin, out)
	}
	return bytes.Contains(v.([]byte), []byte(option))
}

func findMkfsErofs(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if st, err := os.Stat(DefaultMkfsErofs); err == nil && st.Mode().IsRegular() {
		return DefaultMkfsErofs, nil
	}
	if p, err := exec.LookPath("mkfs.erofs"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("mkfs.erofs (erofs-utils) not found in %s or $PATH: install erofs-utils "+
		"(hack/ setup) or use an image with fewer layers: %w", filepath.Dir(DefaultMkfsErofs), errdefs.ErrFailedPrecondition)
}
