package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"golang.org/x/sys/unix"
)

// testMkfsErofs finds an erofs-utils that builds layers the way
// containerd's EROFS differ does (--tar=f --aufs), or skips the test. CI
// installs erofs-utils 1.8.6 at DefaultMkfsErofs; $MSB_MKFS_EROFS overrides.
func testMkfsErofs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("flattening mounts EROFS images: needs root")
	}
	bin := os.Getenv("MSB_MKFS_EROFS")
	if bin == "" {
		if _, err := os.Stat(DefaultMkfsErofs); err == nil {
			bin = DefaultMkfsErofs
		} else if p, err := exec.LookPath("mkfs.erofs"); err == nil {
			bin = p
		}
	}
	if bin == "" {
		t.Skip("mkfs.erofs not installed (erofs-utils >= 1.7; run the hack/ setup)")
	}
	if !mkfsHas(bin, "--tar=") || !mkfsHas(bin, "--aufs") {
		t.Skipf("%s has no --tar=/--aufs (erofs-utils < 1.7)", bin)
	}
	if err := inPrivateMountNS(func() error { return nil }); err != nil {
		t.Skipf("no private mount namespace: %v", err)
	}
	return bin
}

// tent is one tar entry of a test layer.
type tent struct {
	name   string
	typ    byte // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, TypeChar
	mode   int64
	uid    int
	data   string // content, or link target
	xattrs map[string]string
}

var epoch = time.Unix(1700000000, 0)

// makeLayer writes the entries as a tar and turns it into an EROFS blob at
// <root>/<n>/layer.erofs with the EROFS differ's own command line.
func makeLayer(t *testing.T, bin, root string, n int, entries []tent) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, Typeflag: e.typ,
			ModTime: epoch.Add(time.Duration(n*100+i) * time.Second), Format: tar.FormatPAX}
		switch e.typ {
		case 0:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = e.data
		case tar.TypeChar:
			h.Devmajor, h.Devminor = 1, 3
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprint(n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(dir, "layer.erofs")
	cmd := exec.Command(bin, "--tar=f", "--aufs", "--quiet", "-Enoinline_data", "-b4096", blob)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs layer %d: %v: %s", n, err, out)
	}
	return blob
}

// testLayers are five layers, bottom (1) to top (5), with whiteouts, an
// opaque directory, hard links, a symlink, a device node, xattrs, owners and
// a setuid file.
func testLayers(t *testing.T, bin, root string) []string {
	d := func(name string) tent { return tent{name: name, typ: tar.TypeDir} }
	layers := [][]tent{
		{d("etc/"), d("bin/"), d("var/"), d("var/opaque/"), d("dev/"),
			{name: "etc/motd", data: "base\n"}, {name: "etc/issue", data: "issue\n"}, {name: "etc/keep", data: "keep\n"},
			{name: "var/opaque/old", data: "old\n"},
			{name: "bin/a", data: "binary a\n", mode: 0o755}, {name: "bin/b", typ: tar.TypeLink, data: "bin/a"},
			{name: "bin/sh", typ: tar.TypeSymlink, data: "a"},
			{name: "bin/suid", data: "suid\n", mode: 0o4755, uid: 1000, xattrs: map[string]string{"user.k": "v"}},
			{name: "dev/null", typ: tar.TypeChar, mode: 0o666}},
		{d("etc/"), d("var/"), d("var/opaque/"), d("x/"),
			{name: "etc/motd", data: "new\n"}, {name: "etc/.wh.issue"}, {name: "var/opaque/.wh..wh..opq"},
			{name: "var/opaque/new", data: "n\n"},
			{name: "x/h1", data: "hard\n"}, {name: "x/h2", typ: tar.TypeLink, data: "x/h1"}},
		{d("bin/"), {name: "bin/.wh.b"}, {name: "top3", data: strings.Repeat("3", 10000)}},
		{d("dir/"), {name: "dir/f", data: "4\n", uid: 33}, {name: "etc/keep", data: "keep v4\n"}},
		{{name: "top5", data: "5\n", xattrs: map[string]string{"user.top": "5"}}},
	}
	var blobs []string
	for i, entries := range layers {
		blobs = append(blobs, makeLayer(t, bin, root, i+1, entries))
	}
	return blobs
}

// treeOf describes every file below dir: type, mode, owner, size, content
// hash, link target, device, xattrs, mtime, and which paths are hard links
// of one another.
func treeOf(dir string) (string, error) {
	var lines []string
	inodes := map[[2]uint64][]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d mtime=%d", rel, st.Mode, st.Uid, st.Gid, st.Mtim.Sec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s", len(b), hex.EncodeToString(sum[:6]))
			if st.Nlink > 1 {
				k := [2]uint64{st.Dev, st.Ino}
				inodes[k] = append(inodes[k], rel)
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			sz, _ := unix.Llistxattr(p, nil)
			if sz > 0 {
				b := make([]byte, sz)
				sz, _ = unix.Llistxattr(p, b)
				names := strings.Split(strings.TrimRight(string(b[:sz]), "\x00"), "\x00")
				sort.Strings(names)
				for _, n := range names {
					if n == "" {
						// overlayfs sizes the list with the trusted.overlay.*
						// names it then hides.
						continue
					}
					v := make([]byte, 256)
					vn, _ := unix.Lgetxattr(p, n, v)
					line += fmt.Sprintf(" %s=%q", n, v[:max(vn, 0)])
				}
			}
		}
		lines = append(lines, line)
		return nil
	})
	for _, paths := range inodes {
		if len(paths) > 1 {
			sort.Strings(paths)
			lines = append(lines, "hardlinks "+strings.Join(paths, " "))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}

// overlayTree mounts the EROFS images (top first; each with its devices)
// read-only under work, stacks them, and describes the result. It runs in a
// private mount namespace so that nothing leaks on failure.
func overlayTree(t *testing.T, work string, images [][]string) string {
	t.Helper()
	var tree string
	err := inPrivateMountNS(func() error {
		var lowers []string
		for i, img := range images {
			mp := filepath.Join(work, fmt.Sprint(i))
			if err := os.MkdirAll(mp, 0o700); err != nil {
				return err
			}
			if err := mountErofs(img[0], img[1:], mp); err != nil {
				return fmt.Errorf("mount %s: %w", img[0], err)
			}
			defer unix.Unmount(mp, unix.MNT_DETACH)
			lowers = append(lowers, mp)
		}
		src := lowers[0]
		if len(lowers) > 1 {
			src = filepath.Join(work, "ovl")
			os.MkdirAll(src, 0o700)
			if err := unix.Mount("overlay", src, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
				return err
			}
			defer unix.Unmount(src, unix.MNT_DETACH)
		}
		var err error
		tree, err = treeOf(src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestFlattenLayers(t *testing.T) {
	bin := testMkfsErofs(t)
	root := t.TempDir()
	blobs := testLayers(t, bin, root) // bottom first
	if err := os.MkdirAll(filepath.Join(root, "9"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(root, "9", "rwlayer.img")
	mounts := []*types.Mount{mkfsM(img)}
	for i := len(blobs) - 1; i >= 0; i-- {
		mounts = append(mounts, erofsM(blobs[i]))
	}
	mounts = append(mounts, blockOverlay("{{ overlay 1 5 }}"))

	// Budget 4: the upper, the top two layers and one flattened image of
	// the bottom three.
	plan, err := Prepare(context.Background(), testID, mounts, Options{MaxDisks: 4, MkfsErofs: bin})
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultSerialPrefix(testID)
	var ids []string
	for _, d := range plan.Disks {
		ids = append(ids, d.ID)
		if d.ID != p+"-rw" && !d.ReadOnly {
			t.Errorf("disk %s is writable", d.ID)
		}
	}
	if got, want := strings.Join(ids, " "), p+"-rw "+p+"-l1 "+p+"-l2 "+p+"-flat"; got != want {
		t.Errorf("disks %q, want %q", got, want)
	}
	flat := plan.Flattened
	if flat == "" || filepath.Dir(flat) != filepath.Dir(blobs[2]) || !strings.HasPrefix(filepath.Base(flat), flatPrefix) {
		t.Fatalf("flattened image %q, want it next to the top merged layer %s", flat, blobs[2])
	}
	last := plan.Mounts[len(plan.Mounts)-1]
	wantLower := "lowerdir=" + g + "/layers/1:" + g + "/layers/2:" + g + "/layers/flat"
	if !strings.Contains(strings.Join(last.Options, ","), wantLower) {
		t.Errorf("root overlay %v, want %s", last.Options, wantLower)
	}
	if len(plan.Mounts) != 5 || plan.Mounts[3].Target != g+"/layers/flat" || plan.Mounts[3].Source != "disk:"+p+"-flat" {
		t.Errorf("plan %s", planString(plan.Mounts))
	}

	// What the guest stacks (top two + flat) is what all five stack.
	work := t.TempDir()
	want := overlayTree(t, filepath.Join(work, "all"), [][]string{{blobs[4]}, {blobs[3]}, {blobs[2]}, {blobs[1]}, {blobs[0]}})
	got := overlayTree(t, filepath.Join(work, "guest"), [][]string{{blobs[4]}, {blobs[3]}, {flat}})
	if got != want {
		t.Errorf("top layers + flattened image differ from all layers:\n got:\n%s\nwant:\n%s", got, want)
	}
	for _, must := range []string{"etc/motd 100644", "x/h1", "hardlinks x/h1 x/h2", "bin/suid 104755 1000:1000", "user.k=\"v\"", "dev/null 20666", "var/opaque/new"} {
		if !strings.Contains(want, must) {
			t.Errorf("test tree lacks %q (the test layers are not what they should be):\n%s", must, want)
		}
	}
	for _, gone := range []string{"etc/issue", "var/opaque/old", "bin/b ", ".wh."} {
		if strings.Contains(want, gone) {
			t.Errorf("test tree has %q, which a whiteout should hide", gone)
		}
	}

	// A second container of the same image reuses the cached image.
	st1, _ := os.Stat(flat)
	plan2, err := Prepare(context.Background(), "ctr2", mounts, Options{MaxDisks: 4, MkfsErofs: "/nonexistent"})
	if err != nil {
		t.Fatalf("second prepare (cache hit, so mkfs.erofs is not needed): %v", err)
	}
	st2, _ := os.Stat(plan2.Flattened)
	if plan2.Flattened != flat || !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Errorf("second prepare did not reuse %s (got %s)", flat, plan2.Flattened)
	}
	// Nothing but the cache file was left in the snapshot directory.
	entries, _ := os.ReadDir(filepath.Dir(flat))
	for _, e := range entries {
		if e.Name() != "layer.erofs" && e.Name() != filepath.Base(flat) {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	// A changed layer (other size or mtime) makes another cache entry.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(blobs[0], later, later); err != nil {
		t.Fatal(err)
	}
	plan3, err := Prepare(context.Background(), "ctr3", mounts, Options{MaxDisks: 4, MkfsErofs: bin})
	if err != nil {
		t.Fatal(err)
	}
	if plan3.Flattened == flat {
		t.Errorf("a changed layer reused the old cache entry")
	}
	assertNoMountsUnder(t, root)
}

func TestFlattenEverything(t *testing.T) {
	bin := testMkfsErofs(t)
	root := t.TempDir()
	blobs := testLayers(t, bin, root)
	// A read-only view of five layers with room for one disk: all five
	// flatten into one image, which becomes the root itself.
	var mounts []*types.Mount
	for i := len(blobs) - 1; i >= 0; i-- {
		mounts = append(mounts, erofsM(blobs[i]))
	}
	mounts = append(mounts, &types.Mount{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{"lowerdir={{ overlay 0 4 }}"}})
	plan, err := Prepare(context.Background(), testID, mounts, Options{MaxDisks: 1, MkfsErofs: bin})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Disks) != 1 || len(plan.Mounts) != 2 {
		t.Fatalf("disks %+v plan %s", plan.Disks, planString(plan.Mounts))
	}
	if m := plan.Mounts[1]; m.Type != "bind" || m.Source != g+"/layers/flat" || m.Target != groot || strings.Join(m.Options, ",") != "rbind,ro" {
		t.Errorf("root %s", planString(plan.Mounts[1:]))
	}
	work := t.TempDir()
	want := overlayTree(t, filepath.Join(work, "all"), [][]string{{blobs[4]}, {blobs[3]}, {blobs[2]}, {blobs[1]}, {blobs[0]}})
	got := overlayTree(t, filepath.Join(work, "flat"), [][]string{{plan.Flattened}})
	if got != want {
		t.Errorf("flattened image differs from the layers:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestFlattenFsmeta(t *testing.T) {
	bin := testMkfsErofs(t)
	if !mkfsHas(bin, "--ovlfs-strip") {
		t.Skip("mkfs.erofs cannot build an fsmeta (erofs-utils < 1.8)")
	}
	root := t.TempDir()
	blobs := testLayers(t, bin, root) // bottom first
	// What a merged fsmeta for the bottom three layers looks like: made by
	// hand as in the notes, in the top one's directory.
	meta := filepath.Join(root, "3", "fsmeta.erofs")
	if out, err := exec.Command(bin, "--quiet", "--aufs", "--ovlfs-strip=1", meta, blobs[0], blobs[1], blobs[2]).CombinedOutput(); err != nil {
		t.Fatalf("fsmeta: %v: %s", err, out)
	}
	os.MkdirAll(filepath.Join(root, "9"), 0o755)
	img := filepath.Join(root, "9", "rwlayer.img")
	mounts := []*types.Mount{mkfsM(img), erofsM(blobs[4]), erofsM(blobs[3]),
		erofsM(meta, "device="+blobs[0], "device="+blobs[1], "device="+blobs[2]),
		blockOverlay("{{ overlay 1 3 }}")}

	// Enough disks: the fsmeta and its devices are attached as they are.
	plan, err := Prepare(context.Background(), testID, mounts, Options{MaxDisks: 7, MkfsErofs: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Disks) != 7 || plan.Flattened != "" {
		t.Errorf("disks %+v, flattened %q", plan.Disks, plan.Flattened)
	}
	// Five disks: the upper, the top two layers and the fsmeta flattened
	// with its three blobs into one.
	plan, err = Prepare(context.Background(), testID, mounts, Options{MaxDisks: 4, MkfsErofs: bin})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Disks) != 4 || plan.Flattened == "" {
		t.Fatalf("disks %+v, flattened %q", plan.Disks, plan.Flattened)
	}
	work := t.TempDir()
	want := overlayTree(t, filepath.Join(work, "meta"), [][]string{{meta, blobs[0], blobs[1], blobs[2]}})
	got := overlayTree(t, filepath.Join(work, "flat"), [][]string{{plan.Flattened}})
	if got != want {
		t.Errorf("flattened fsmeta differs:\n got:\n%s\nwant:\n%s", got, want)
	}
	all := overlayTree(t, filepath.Join(work, "all"), [][]string{{blobs[4]}, {blobs[3]}, {blobs[2]}, {blobs[1]}, {blobs[0]}})
	guest := overlayTree(t, filepath.Join(work, "guest"), [][]string{{blobs[4]}, {blobs[3]}, {plan.Flattened}})
	if guest != all {
		t.Errorf("guest stack differs from all layers:\n got:\n%s\nwant:\n%s", guest, all)
	}
}

func TestFlattenFailureCleansUp(t *testing.T) {
	bin := testMkfsErofs(t)
	root := t.TempDir()
	blobs := testLayers(t, bin, root)
	// A blob that is no EROFS image makes the flatten fail after the ext4
	// image was made: both go, and nothing is left in the layer directory.
	if err := os.WriteFile(blobs[1], []byte("not erofs"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "9"), 0o755)
	img := filepath.Join(root, "9", "rwlayer.img")
	mounts := []*types.Mount{mkfsM(img)}
	for i := len(blobs) - 1; i >= 0; i-- {
		mounts = append(mounts, erofsM(blobs[i]))
	}
	mounts = append(mounts, blockOverlay("{{ overlay 1 5 }}"))
	_, err := Prepare(context.Background(), testID, mounts, Options{MaxDisks: 3, MkfsErofs: bin})
	if err == nil || !strings.Contains(err.Error(), "mount layer "+blobs[1]) {
		t.Fatalf("got %v, want a failure to mount %s", err, blobs[1])
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ext4 image left behind: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(blobs[3]))
	for _, e := range entries {
		if e.Name() != "layer.erofs" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	assertNoMountsUnder(t, root)
}

func assertNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), dir) {
		t.Errorf("mounts under %s leaked into the host's mount table", dir)
	}
}

func TestFlattenOnLoopDevices(t *testing.T) {
	bin := testMkfsErofs(t)
	root := t.TempDir()
	blobs := testLayers(t, bin, root)
	before, _ := exec.Command("losetup", "-a").CombinedOutput()
	loopOnly = true
	defer func() { loopOnly = false }()
	var mounts []*types.Mount
	for i := len(blobs) - 1; i >= 0; i-- {
		mounts = append(mounts, erofsM(blobs[i]))
	}
	mounts = append(mounts, &types.Mount{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{"lowerdir={{ overlay 0 4 }}"}})
	plan, err := Prepare(context.Background(), testID, mounts, Options{MaxDisks: 2, MkfsErofs: bin})
	if err != nil {
		if strings.Contains(err.Error(), "loop device") {
			t.Skipf("no loop devices here: %v", err)
		}
		t.Fatal(err)
	}
	loopOnly = false
	work := t.TempDir()
	want := overlayTree(t, filepath.Join(work, "all"), [][]string{{blobs[4]}, {blobs[3]}, {blobs[2]}, {blobs[1]}, {blobs[0]}})
	got := overlayTree(t, filepath.Join(work, "guest"), [][]string{{blobs[4]}, {plan.Flattened}})
	if got != want {
		t.Errorf("loop-device flatten differs:\n got:\n%s\nwant:\n%s", got, want)
	}
	// The loop devices clear themselves once unmounted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		after, _ := exec.Command("losetup", "-a").CombinedOutput()
		if bytes.Equal(before, after) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("loop devices left attached:\n%s", after)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}
