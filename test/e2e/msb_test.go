//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The tests here are about the VM around each container; runc has none.

func TestGuestKernel(t *testing.T) {
	skipUnlessMSB(t, "runc containers share the host's kernel")
	host, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	r := runCtr(t, nil, busybox, newID(t), "uname", "-r")
	guest := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || guest == "" {
		t.Fatalf("uname -r: %v", r)
	}
	if guest == strings.TrimSpace(string(host)) {
		t.Fatalf("the container runs the host's kernel %s", guest)
	}
	t.Logf("host kernel %s, guest kernel %s", strings.TrimSpace(string(host)), guest)
}

func TestVMMKilled(t *testing.T) {
	skipUnlessMSB(t, "runc has no VMM")
	id := newID(t)
	before := captureHostState(t)
	runDetached(t, busybox, id, "sleep", "300")
	shim := shimPID(t, id)
	vs := vmms(procs(), shim)
	if len(vs) != 1 {
		t.Fatalf("want 1 VMM (%v) under the shim (pid %d), found %v", vmmNames, shim, vs)
	}
	if err := syscall.Kill(vs[0].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, id, "STOPPED")
	r := ctr(t, "task", "delete", id)
	if r.Code != 0 || !strings.Contains(r.Stderr, "non-zero exit code") {
		t.Fatalf("task delete after the VMM died: want success and a non-zero exit code, got %v", r)
	}
	mustCtr(t, "container", "delete", id)
	checkNoLeaks(t, before)
}

// The runtime's shim dies: containerd must still clean up. With runc the
// container's process outlives the shim and containerd's cleanup (the shim
// binary's delete command) kills it; with msb the VM must not outlive it.
func TestShimKilled(t *testing.T) {
	id := newID(t)
	before := captureHostState(t)
	runDetached(t, busybox, id, "sleep", "300")
	shim := shimPID(t, id)
	if isMSB() {
		if vs := vmms(procs(), shim); len(vs) != 1 {
			t.Fatalf("want 1 VMM under the shim (pid %d), found %v", shim, vs)
		}
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// containerd notices the dead shim and cleans up itself; the task is
	// gone by then, which is fine.
	if r := ctr(t, "task", "delete", "--force", id); r.Code != 0 && !r.notFound() {
		t.Fatalf("task delete --force after the shim died: %v", r)
	}
	mustCtr(t, "container", "delete", id)
	if _, ok := tasks(t)[id]; ok {
		t.Errorf("task %s still listed", id)
	}
	checkNoLeaks(t, before) // shims and VMMs included
}

// TestReadOnlyBindOnHost: the guest is not trusted, so a read-only bind
// mount must be read-only on the host side of the VM too, not only in the
// guest's mount table: virtiofsd serves it from a read-only bind.
func TestReadOnlyBindOnHost(t *testing.T) {
	skipUnlessMSB(t, "runc has no virtiofsd")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	before := captureHostState(t)
	if r := ctr(t, append([]string{"run", "-d", "--runtime", runtimeName, "--snapshotter", "erofs",
		"--mount", "type=bind,src=" + dir + ",dst=/mnt,options=rbind:ro"}, busybox, id, "sleep", "300")...); r.Code != 0 {
		t.Fatalf("%v", r)
	}
	if r := ctr(t, "task", "exec", "--exec-id", "w", id, "sh", "-c", "cat /mnt/in.txt; echo x >/mnt/out.txt"); r.Stdout != "from the host\n" || r.Code == 0 {
		t.Fatalf("read-only bind in the container: want the file and a failed write, got %v", r)
	}
	// virtiofsd runs in the shim's mount namespace and chroots into what
	// it serves: its /proc/PID/root is the served directory as it sees it.
	served, pid := "", 0
	for _, p := range procs() {
		if _, src, ok := strings.Cut(p.cmdline, "source="); ok && p.exe != "ctr" {
			src, _, _ = strings.Cut(src, " ")
			root := fmt.Sprintf("/proc/%d/root", p.pid)
			if b, err := os.ReadFile(filepath.Join(root, "in.txt")); err == nil && string(b) == "from the host\n" {
				served, pid = src, p.pid
			}
		}
	}
	if served == "" || served == dir {
		t.Fatalf("virtiofsd should serve the bind from a read-only bind of it, not %q", served)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		t.Fatalf("%s is not a read-only mount: flags %#x, %v", served, st.Flags, err)
	}
	if err := os.WriteFile(filepath.Join(root, "out.txt"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write through the served directory: %v, want EROFS", err)
	}
	// The bind is the shim's own: the host's mount table does not show it.
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+served+" ") {
		t.Fatalf("the shim's bind %s is in the host's mount namespace", served)
	}
	if err := removeContainer(id); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t, before)
}
