package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
)

func TestMountHostOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	base := t.TempDir()
	for _, d := range []string{"l1", "l2", "upper", "work"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(base, "l1", "bottom"), []byte("1"), 0o644)
	os.WriteFile(filepath.Join(base, "l2", "top"), []byte("2"), 0o644)
	rootfs := filepath.Join(base, "bundle", "rootfs")
	m := &types.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"index=off", "workdir=" + filepath.Join(base, "work"), "upperdir=" + filepath.Join(base, "upper"),
		"lowerdir=" + filepath.Join(base, "l2") + ":" + filepath.Join(base, "l1")}}
	plan, err := Prepare(context.Background(), testID, []*types.Mount{m}, Options{HostRootfs: rootfs})
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.MountHost(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnmountHost(rootfs) })
	for _, f := range []string{"bottom", "top"} {
		if _, err := os.Stat(filepath.Join(rootfs, f)); err != nil {
			t.Errorf("%s not visible through the host overlay: %v", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(base, "upper", "new")); err != nil {
		t.Errorf("write did not reach the upper dir: %v", err)
	}
	if err := UnmountHost(rootfs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), rootfs) {
		t.Errorf("%s still mounted", rootfs)
	}
	// Idempotent, and fine for a directory that never existed.
	if err := UnmountHost(rootfs); err != nil {
		t.Errorf("second unmount: %v", err)
	}
	if err := UnmountHost(filepath.Join(base, "nope")); err != nil {
		t.Errorf("unmount of a missing dir: %v", err)
	}
	// A plan on disks mounts nothing on the host.
	if err := (&Plan{}).MountHost(context.Background()); err != nil {
		t.Errorf("disk plan MountHost: %v", err)
	}
}
