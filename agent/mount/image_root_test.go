package mount

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/msb-runtime/msb/agent/api"
)

// TestRootPlanImageFiles: a pod's later container gets its layers and its
// writable layer as files in the VM's share; the plan mounts the EROFS
// layer straight from its file and the ext4 image through a loop device,
// and unmounting frees the loop device.
func TestRootPlanImageFiles(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	layer, img := filepath.Join(dir, "layer.erofs"), filepath.Join(dir, "rw.img")
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "os"), []byte("layer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, mkfsErofs(t), "--quiet", layer, src)
	run(t, "mkfs.ext4", "-q", "-F", img, "16M")
	g := filepath.Join(dir, "g")
	plan := []*api.Mount{
		{Type: "ext4", Source: img, Target: g + "/rw", Options: []string{"rw", "loop"}},
		{Type: "erofs", Source: layer, Target: g + "/layers/1", Options: []string{"ro"}},
		{Type: "overlay", Source: "overlay", Target: g + "/rootfs", Mkdirs: []string{g + "/rw/upper:0755", g + "/rw/work:0755"},
			Options: []string{"lowerdir=" + g + "/layers/1", "upperdir=" + g + "/rw/upper", "workdir=" + g + "/rw/work"}},
	}
	m, err := Planner{}.Run(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(g, "rootfs", "etc", "os"))
	if err != nil || string(b) != "layer\n" {
		t.Errorf("file from the EROFS layer: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(g, "rootfs", "new"), []byte("x"), 0o644); err != nil {
		t.Errorf("write to the root: %v", err)
	}
	loops := loopsBacking(t, img)
	if len(loops) != 1 {
		t.Errorf("loop devices backed by %s: %v, want one", img, loops)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if loops := loopsBacking(t, img); len(loops) != 0 {
		t.Errorf("loop devices still backed by %s after the unmount: %v", img, loops)
	}
}

func mkfsErofs(t *testing.T) string {
	for _, p := range []string{"/opt/msb/erofs-utils/bin/mkfs.erofs", "mkfs.erofs"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("mkfs.erofs not found (hack/setup installs it)")
	return ""
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// loopsBacking lists the loop devices whose backing file is path.
func loopsBacking(t *testing.T, path string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == path {
			out = append(out, f)
		}
	}
	return out
}

// TestRootOverlayManyLayers: an overlay whose options overflow mount(2)'s
// one page (100 layers under long container paths) still mounts, with the
// layers stacked top first.
func TestRootOverlayManyLayers(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("c", 76), "layers")
	var lowers []string
	for i := range 100 {
		l := filepath.Join(long, strconv.Itoa(i))
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, "f"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, "top"), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, l)
	}
	opt := "lowerdir=" + strings.Join(lowers, ":")
	if len(opt) <= maxMountData {
		t.Fatalf("the options (%d bytes) fit mount(2): the test proves nothing", len(opt))
	}
	target := filepath.Join(dir, "root")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Mount("overlay", target, "overlay", ParseOptions([]string{"ro", opt})); err != nil {
		t.Fatal(err)
	}
	defer Unmount(target)
	ents, err := os.ReadDir(target)
	if err != nil || len(ents) != 101 {
		t.Errorf("entries %d, %v; want 101", len(ents), err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != "0" {
		t.Errorf("top = %q, %v; want the first lower's", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); err == nil {
		t.Errorf("a read-only overlay was written")
	}
}
