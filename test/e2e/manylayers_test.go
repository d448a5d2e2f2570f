//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// manyLayers is far more layers than a VM has disk slots: those beyond
// them reach the guest as files in the VM's share, which the guest kernel
// mounts (no flattening, nothing mounted on the host).
const manyLayers = 100

// TestManyLayers runs an image of 100 layers: busybox at the bottom, then
// one file per layer, each later layer overwriting /top and deleting the
// previous layer's /gone-<n> with a whiteout.
func TestManyLayers(t *testing.T) {
	dir := t.TempDir()
	var tars []string
	for i := 0; i < manyLayers; i++ {
		p := filepath.Join(dir, fmt.Sprintf("l%03d.tar", i))
		if err := writeLayer(p, i); err != nil {
			t.Fatal(err)
		}
		tars = append(tars, p)
	}
	ref := "docker.io/library/many-layers:" + runToken
	out := filepath.Join(dir, "image.tar")
	mkoci := filepath.Join(envOr("MSB_CACHE", "/opt/msb/cache"), "bin", "mkoci")
	if b, err := exec.Command(mkoci, append([]string{"-o", out, "-name", ref, "-cmd", "sh"}, tars...)...).CombinedOutput(); err != nil {
		t.Fatalf("mkoci: %v\n%s", err, b)
	}
	mustCtr(t, "images", "import", "--snapshotter", "erofs", out)
	t.Cleanup(func() { ctr(t, "images", "rm", "--sync", ref) })

	id := newID(t)
	runDetached(t, ref, id, "sleep", "300")
	r := ctr(t, "task", "exec", "--exec-id", "check", id, "sh", "-c", "ls /layers | wc -l; cat /top; ls / | grep -c gone-")
	want := fmt.Sprintf("%d\n%d\n1\n", manyLayers-1, manyLayers-1)
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("want %q (layer files, top layer, one surviving gone-file): %s", want, r)
	}
	if isMSB() {
		shim := shimPID(t, id)
		for _, pid := range append([]int{shim}, vmPIDs(shim)...) {
			if m := imageMounts(t, pid); len(m) > 0 {
				t.Errorf("process %d's mount namespace holds image mounts:\n  %s", pid, strings.Join(m, "\n  "))
			}
		}
	}
}

// writeLayer writes layer i as a tar: i == 0 is busybox with sh and the
// applets the test runs; i > 0 adds /layers/<i>, replaces /top, adds
// /gone-<i> and whites out /gone-<i-1>.
func writeLayer(path string, i int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	file := func(name string, mode int64, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir})
	}
	if i == 0 {
		bb, err := os.ReadFile("/bin/busybox")
		if err != nil {
			return fmt.Errorf("busybox-static: %w", err)
		}
		if err := dir("bin/"); err != nil {
			return err
		}
		if err := file("bin/busybox", 0o755, bb); err != nil {
			return err
		}
		for _, applet := range []string{"sh", "ls", "cat", "wc", "grep", "sleep", "ip", "hostname"} {
			// Mode too: some unpackers chmod the shared inode to the link entry's mode.
			if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Mode: 0o755, Typeflag: tar.TypeLink, Linkname: "bin/busybox"}); err != nil {
				return err
			}
		}
		if err := dir("layers/"); err != nil {
			return err
		}
	} else {
		n := strconv.Itoa(i)
		steps := []error{
			file("layers/"+n, 0o644, []byte(n+"\n")),
			file("top", 0o644, []byte(n+"\n")),
			file("gone-"+n, 0o644, nil),
		}
		if i > 1 {
			steps = append(steps, file(".wh.gone-"+strconv.Itoa(i-1), 0o644, nil))
		}
		for _, err := range steps {
			if err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// vmPIDs are the shim's descendants (the VMM and its helpers), or the VMM
// and helpers it adopted from the warm pool and theirs.
func vmPIDs(shim int) []int {
	ps := procs()
	var out []int
	for pid := range heldPids(ps, shim) {
		out = append(out, pid) // a VM adopted from the warm pool
	}
	for changed := true; changed; {
		changed = false
		for _, p := range ps {
			if (p.ppid == shim || slices.Contains(out, p.ppid)) && !slices.Contains(out, p.pid) {
				out, changed = append(out, p.pid), true
			}
		}
	}
	return out
}
