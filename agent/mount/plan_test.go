package mount

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

func TestMkdir(t *testing.T) {
	dir := t.TempDir()
	if err := Mkdir(filepath.Join(dir, "a/b") + ":1777"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "a/b"))
	if err != nil || st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	if err := Mkdir(filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"rel/dir:0755", filepath.Join(dir, "d") + ":99x"} {
		if err := Mkdir(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Mkdir(%q) = %v", bad, err)
		}
	}
}

func TestPlanValidation(t *testing.T) {
	p := Planner{}
	if _, err := p.Run(context.Background(), nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty plan: %v", err)
	}
	_, err := p.Run(context.Background(), []*api.Mount{{Type: "tmpfs", Source: "tmpfs", Target: "relative"}})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `rootfs mount 0 (type "tmpfs", target "relative")`) {
		t.Fatalf("relative target: %v", err)
	}
	_, err = p.Run(context.Background(), []*api.Mount{{Source: "x", Target: "/x"}})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("no type: %v", err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// TestRootPlanOverlay runs the block-mode shape: a writable layer, mkdirs
// inside it, then an overlay over a read-only lower.
func TestRootPlanOverlay(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	os.MkdirAll(lower, 0o755)
	os.WriteFile(filepath.Join(lower, "hello"), []byte("hi"), 0o644)
	rw, root := filepath.Join(dir, "rw"), filepath.Join(dir, "rootfs")
	plan := []*api.Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: rw, Options: []string{"rw", "size=16m"}},
		{Type: "bind", Source: lower, Target: filepath.Join(dir, "l0"), Options: []string{"ro", "rbind"}},
		{Type: "overlay", Source: "overlay", Target: root, Mkdirs: []string{rw + "/upper:0755"},
			Options: []string{"X-containerd.mkdir.path=" + rw + "/work:0700", "workdir=" + rw + "/work",
				"upperdir=" + rw + "/upper", "lowerdir=" + filepath.Join(dir, "l0")}},
	}
	m, err := Planner{}.Run(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	if m.Root() != root {
		t.Fatalf("root %q", m.Root())
	}
	if b, _ := os.ReadFile(filepath.Join(root, "hello")); string(b) != "hi" {
		t.Fatalf("lower not visible: %q", b)
	}
	if err := os.WriteFile(filepath.Join(root, "new"), nil, 0o644); err != nil {
		t.Fatalf("overlay not writable: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "l0", "x"), nil, 0o644); err == nil {
		t.Fatal("ro bind is writable")
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rw, root, filepath.Join(dir, "l0")} {
		if mounted(t, p) {
			t.Errorf("%s still mounted", p)
		}
	}
}

func TestRootPlanRollback(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	first := filepath.Join(dir, "a")
	plan := []*api.Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: first},
		{Type: "erofs", Source: "disk:nosuchdisk", Target: filepath.Join(dir, "b")},
	}
	_, err := Planner{Disks: Disks{SysBlock: dir, Dev: "/dev", ByID: dir}}.Run(context.Background(), plan)
	if err == nil || !strings.Contains(err.Error(), "rootfs mount 1") || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("error %v", err)
	}
	if mounted(t, first) {
		t.Fatal("rollback left the first mount")
	}
	plan[1] = &api.Mount{Type: "ext4", Source: filepath.Join(dir, "nodev"), Target: filepath.Join(dir, "b")}
	_, err = Planner{}.Run(context.Background(), plan)
	if err == nil || !strings.Contains(err.Error(), `rootfs mount 1 (type "ext4"`) || !strings.Contains(err.Error(), "(ENOENT)") {
		t.Fatalf("error %v", err)
	}
	var en unix.Errno
	if !errors.As(err, &en) || en != unix.ENOENT {
		t.Fatalf("errno not kept: %v", err)
	}
	if mounted(t, first) {
		t.Fatal("rollback left the first mount")
	}
}
