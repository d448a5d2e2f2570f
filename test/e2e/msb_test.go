//go:build e2e

package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
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
