package mount

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootRecursiveReadOnly: "rro" makes a bind read-only with every mount
// below it (CRI's recursive read-only volumes), where "ro" leaves a
// submount writable.
func TestRootRecursiveReadOnly(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	src, sub := filepath.Join(dir, "src"), filepath.Join(dir, "src", "tmpfs")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(sub, unix.MNT_DETACH)
	for _, tc := range []struct {
		opt      string
		writable bool
	}{{"ro", true}, {"rro", false}} {
		target := filepath.Join(dir, tc.opt)
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Mount(src, target, "bind", ParseOptions([]string{"rbind", tc.opt, "rprivate"})); err != nil {
			t.Fatalf("%s: %v", tc.opt, err)
		}
		err := os.WriteFile(filepath.Join(target, "tmpfs", "f"), nil, 0o644)
		if tc.writable != (err == nil) || (err != nil && !errors.Is(err, unix.EROFS)) {
			t.Errorf("%s bind: write in the submount: %v", tc.opt, err)
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
}
