package rootfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	agentmount "github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/vm"
)

// TestOnHost: the disk plan's mounts become host mounts of the images, in
// the same order, under the stage directory, with the root at the host
// rootfs; the VM gets that directory as one share.
func TestOnHost(t *testing.T) {
	r := newSnapDir(t, 1, 2, 7)
	img := r.path("7", "rwlayer.img")
	p := DefaultSerialPrefix(testID)
	disk := &Plan{
		Disks: []vm.Disk{{ID: p + "-rw", Path: img}, {ID: p + "-l1", Path: r.layer(2), ReadOnly: true},
			{ID: p + "-l2", Path: r.layer(1), ReadOnly: true}},
		Mounts: []*api.Mount{
			{Type: "ext4", Source: "disk:" + p + "-rw", Target: g + "/rw", Options: []string{"rw"}},
			{Type: "erofs", Source: "disk:" + p + "-l1", Target: g + "/layers/1", Options: []string{"ro"}},
			{Type: "erofs", Source: "disk:" + p + "-l2", Target: g + "/layers/2", Options: []string{"ro"}},
			{Type: "overlay", Source: "overlay", Target: groot, Mkdirs: []string{g + "/rw/upper:0755", g + "/rw/work:0755"},
				Options: []string{"workdir=" + g + "/rw/work", "upperdir=" + g + "/rw/upper", "lowerdir=" + g + "/layers/1:" + g + "/layers/2"}},
		},
		Root:    groot,
		Created: []string{img},
	}
	h, err := disk.OnHost(testID, "/st", "/b/rootfs", "tag")
	if err != nil {
		t.Fatal(err)
	}
	want := []HostStep{
		{Mount: mount.Mount{Type: "ext4", Source: img, Options: []string{"loop", "rw"}}, Target: "/st/rw"},
		{Mount: mount.Mount{Type: "erofs", Source: r.layer(2), Options: []string{"ro"}}, Target: "/st/layers/1"},
		{Mount: mount.Mount{Type: "erofs", Source: r.layer(1), Options: []string{"ro"}}, Target: "/st/layers/2"},
		{Mount: mount.Mount{Type: "overlay", Source: "overlay", Options: []string{"workdir=/st/rw/work", "upperdir=/st/rw/upper",
			"lowerdir=/st/layers/1:/st/layers/2"}}, Target: "/b/rootfs", Mkdirs: []string{"/st/rw/upper:0755", "/st/rw/work:0755"}},
	}
	if !reflect.DeepEqual(h.HostSteps, want) {
		t.Fatalf("host steps\n%+v\nwant\n%+v", h.HostSteps, want)
	}
	if len(h.Disks) != 0 || !reflect.DeepEqual(h.Shares, []vm.Share{{Tag: "tag", Path: "/b/rootfs"}}) ||
		len(h.Mounts) != 1 || h.Mounts[0].Type != "virtiofs" || h.Mounts[0].Target != groot {
		t.Fatalf("VM side: disks %v shares %v mounts %v", h.Disks, h.Shares, h.Mounts)
	}
	if got := h.HostTargets(); !reflect.DeepEqual(got, []string{"/b/rootfs", "/st/layers/2", "/st/layers/1", "/st/rw"}) {
		t.Fatalf("unmount order %v", got)
	}

	// A writable layer that existed before may hold what a guest wrote:
	// the host kernel must not mount it.
	disk.Created = nil
	if _, err := disk.OnHost(testID, "/st", "/b/rootfs", "tag"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("existing writable layer: %v", err)
	}
}

// TestRootOnHostMounts builds a real root on the host from an EROFS image
// and a fresh ext4 writable layer, then undoes it.
// hostRoot mounts a one-layer EROFS root with an ext4 upper on the host
// through OnHost, with extra overlay options; it returns the test
// directory and the root.
func hostRoot(t *testing.T, extra ...string) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	mkfsErofs, err := findMkfsErofs("")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc", "hello"), []byte("from the layer\n"), 0o644)
	layer := filepath.Join(dir, "layer.erofs")
	if out, err := exec.Command(mkfsErofs, layer, src).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v\n%s", err, out)
	}
	img := filepath.Join(dir, "rwlayer.img")
	plan, err := Prepare(context.Background(), testID, []*types.Mount{mkfsM(img), erofsM(layer), blockOverlayWith("{{ mount 1 }}", extra...)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rootDir := filepath.Join(dir, "rootfs")
	h, err := plan.OnHost(testID, filepath.Join(dir, "stage"), rootDir, "tag")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.MountHost(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range h.HostTargets() {
			if err := mount.UnmountAll(m, unix.MNT_DETACH); err != nil {
				t.Error(err)
			}
		}
	})
	if b, err := os.ReadFile(filepath.Join(rootDir, "etc", "hello")); err != nil || string(b) != "from the layer\n" {
		t.Fatalf("layer file through the host root: %q %v", b, err)
	}
	return dir, rootDir
}

func TestRootOnHostMounts(t *testing.T) {
	dir, rootDir := hostRoot(t)
	if err := os.WriteFile(filepath.Join(rootDir, "new"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write in the host root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stage", "rw", "upper", "new")); err != nil {
		t.Fatalf("the write did not land in the ext4 upper: %v", err)
	}
}

// TestRootOnHostIDMapped: a user-namespace container's root built on the
// host shows the image's root as the mapped root (1000), takes writes from
// it (stored with the image's ids) and none from the unmapped real root.
func TestRootOnHostIDMapped(t *testing.T) {
	dir, rootDir := hostRoot(t, "uidmap=0:1000:65536", "gidmap=0:1000:65536")
	for _, p := range []string{rootDir, filepath.Join(rootDir, "etc", "hello")} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("%s: owner %d:%d (%v), want 1000:1000", p, st.Uid, st.Gid, err)
		}
	}
	err := agentmount.AsUser(1000, 1000, func() error { return os.WriteFile(filepath.Join(rootDir, "new"), []byte("x"), 0o644) })
	if err != nil {
		t.Fatalf("write as the mapped root: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "stage", "rw", "upper", "new"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("the upper layer's file: owner %d:%d (%v), want the image's 0:0", st.Uid, st.Gid, err)
	}
	if err := os.WriteFile(filepath.Join(rootDir, "byroot"), nil, 0o644); err == nil {
		t.Error("the unmapped real root wrote into the root")
	}
}
