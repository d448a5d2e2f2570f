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
func TestRootOnHostMounts(t *testing.T) {
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
	plan, err := Prepare(context.Background(), testID, []*types.Mount{mkfsM(img), erofsM(layer), blockOverlay("{{ mount 1 }}")}, Options{})
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
	defer func() {
		for _, m := range h.HostTargets() {
			if err := mount.UnmountAll(m, unix.MNT_DETACH); err != nil {
				t.Error(err)
			}
		}
	}()
	if b, err := os.ReadFile(filepath.Join(rootDir, "etc", "hello")); err != nil || string(b) != "from the layer\n" {
		t.Fatalf("layer file through the host root: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(rootDir, "new"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write in the host root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stage", "rw", "upper", "new")); err != nil {
		t.Fatalf("the write did not land in the ext4 upper: %v", err)
	}
}
