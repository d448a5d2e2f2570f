package mountns

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSubmounts: the mounts below a directory, parents first, with their
// read-only flag; the directory's own mount is not one of them.
func TestSubmounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "with space")
	for _, d := range []string{dir, dir + "/a", dir + "/a/b"} {
		os.MkdirAll(d, 0o755)
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
		os.MkdirAll(d+"/a", 0o755)
		os.MkdirAll(d+"/b", 0o755)
	}
	if err := unix.Mount("", dir+"/a/b", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	got, err := Submounts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Submount{{Rel: "a"}, {Rel: "a/b", ReadOnly: true}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("submounts %+v, want %+v", got, want)
	}
}
