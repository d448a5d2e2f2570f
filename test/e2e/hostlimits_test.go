//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/vm"
)

// The tests here check what bounds a VM on the host, whatever its guest
// does: the host cgroup its VMM and virtiofsd run in (memory limit, CPU
// quota), the refusal of a VM the host cannot hold, and the console log's
// cap. runc has no VM: its limits are the container cgroup's.

// cgroupOf is pid's cgroup: in the memory hierarchy on cgroup v1, the
// unified one on v2.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && ((cgroups.Mode() == cgroups.Unified && f[0] == "0") || f[1] == "memory") {
			return f[2]
		}
	}
	t.Fatalf("pid %d: no memory cgroup in\n%s", pid, b)
	return ""
}

// cgroupDir is cg's directory: in controller's hierarchy on v1.
func cgroupDir(cg, controller string) string {
	if cgroups.Mode() == cgroups.Unified {
		return filepath.Join("/sys/fs/cgroup", cg)
	}
	return filepath.Join("/sys/fs/cgroup", controller, cg)
}

func readCgroup(t *testing.T, cg, controller, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cgroupDir(cg, controller), file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// vmmCgroup runs a detached container with flags and returns its VMM, the
// VMM's host cgroup (checked to be the VM's own) and the shim's pid.
func vmmCgroup(t *testing.T, id string, flags ...string) (proc, string, int) {
	t.Helper()
	mustCtr(t, runArgs(append([]string{"-d"}, flags...), busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
	shim := shimPID(t, id)
	vs := vmms(procs(), shim)
	if len(vs) != 1 {
		t.Fatalf("want 1 VMM under the shim (pid %d), found %v", shim, vs)
	}
	cg := cgroupOf(t, vs[0].pid)
	if filepath.Base(cg) != vm.CgroupPrefix+id {
		t.Fatalf("the VMM runs in cgroup %s, not in one of the VM's own (%s%s)", cg, vm.CgroupPrefix, id)
	}
	return vs[0], cg, shim
}

// checkCgroupGone fails unless cg is gone from the host once the container is.
func checkCgroupGone(t *testing.T, cg string) {
	t.Helper()
	if _, err := os.Stat(cgroupDir(cg, "memory")); !os.IsNotExist(err) {
		t.Errorf("host cgroup %s left behind (%v)", cg, err)
	}
}

// TestHostMemoryLimit: a container limited to 256 MiB boots a VM of 256 MiB
// plus the guest's overhead; its VMM and virtiofsd run in a host cgroup
// limited to that plus the VMM's overhead.
func TestHostMemoryLimit(t *testing.T) {
	skipUnlessMSB(t, "runc puts the container itself in the cgroup")
	id := newID(t)
	mnt := t.TempDir() // a bind mount: served by virtiofsd
	vmm, cg, shim := vmmCgroup(t, id, "--memory-limit", strconv.Itoa(256<<20),
		"--mount", "type=bind,src="+mnt+",dst=/mnt,options=rbind:ro")
	want := strconv.Itoa((256 + oci.GuestOverheadMiB + vm.VMMOverheadMiB) << 20)
	limit := "memory.limit_in_bytes"
	if cgroups.Mode() == cgroups.Unified {
		limit = "memory.max"
	}
	if got := readCgroup(t, cg, "memory", limit); got != want {
		t.Errorf("VMM (pid %d) host cgroup %s: %s = %s, want %s", vmm.pid, cg, limit, got, want)
	}
	helpers := 0
	for _, p := range procs() {
		if p.exe == "virtiofsd" && p.ppid == shim {
			helpers++
			if got := cgroupOf(t, p.pid); got != cg {
				t.Errorf("virtiofsd (pid %d) runs in cgroup %s, want the VM's %s", p.pid, got, cg)
			}
		}
	}
	if helpers == 0 && vmm.exe == "qemu-system-x86_64" {
		t.Errorf("no virtiofsd under the shim for the bind mount")
	}
	if err := removeContainer(id); err != nil {
		t.Fatal(err)
	}
	checkCgroupGone(t, cg)
}

// TestHostCPUQuota: a 100m container (ctr --cpus 0.1) holds to 10 % of a
// CPU on the host too: its VMM's host cgroup has that quota.
func TestHostCPUQuota(t *testing.T) {
	skipUnlessMSB(t, "runc puts the container itself in the cgroup")
	id := newID(t)
	_, cg, _ := vmmCgroup(t, id, "--cpus", "0.1")
	var got string
	if cgroups.Mode() == cgroups.Unified {
		got = readCgroup(t, cg, "cpu", "cpu.max")
	} else {
		got = readCgroup(t, cg, "cpu", "cpu.cfs_quota_us") + " " + readCgroup(t, cg, "cpu", "cpu.cfs_period_us")
	}
	if got != "10000 100000" {
		t.Errorf("host cgroup %s: CPU quota %q, want 10000 per 100000 µs", cg, got)
	}
	if r := ctr(t, "task", "exec", "--exec-id", "echo", id, "echo", "alive"); r.Code != 0 || r.Stdout != "alive\n" {
		t.Errorf("exec under the quota: %v", r)
	}
}

func memTotal(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

// TestHostRefusesHugeVM: a VM larger than the host is refused at create,
// before anything boots, with an error that says so in numbers.
func TestHostRefusesHugeVM(t *testing.T) {
	skipUnlessMSB(t, "runc starts a container with any memory limit")
	const limit = 512 << 30
	if memTotal(t) > limit {
		t.Skipf("the host has more than %d GiB", limit>>30)
	}
	id := newID(t)
	before := captureHostState(t)
	r := runCtr(t, []string{"--memory-limit", strconv.Itoa(limit)}, busybox, id, "true")
	if r.Code == 0 {
		t.Fatalf("a %d GiB VM ran on this host: %v", limit>>30, r)
	}
	wantMiB := fmt.Sprintf("VM memory %d MiB", limit>>20+oci.GuestOverheadMiB)
	if !strings.Contains(r.Stderr, wantMiB) || !strings.Contains(r.Stderr, "MiB of memory the host can give") {
		t.Errorf("the error does not name the VM's memory (%q) and the host's: %v", wantMiB, r)
	}
	checkNoLeaks(t, before)
	if left, _ := filepath.Glob(filepath.Join(cgroupDir("/", "memory"), "*", vm.CgroupPrefix+id)); len(left) > 0 {
		t.Errorf("host cgroup made for the refused VM: %v", left)
	}
}

// TestHostCgroupShimKilled: the shim dies; containerd's cleanup (shim
// delete) removes the VM's host cgroup from the record in the bundle.
func TestHostCgroupShimKilled(t *testing.T) {
	skipUnlessMSB(t, "runc has no VM cgroup")
	id := newID(t)
	_, cg, shim := vmmCgroup(t, id, "--memory-limit", strconv.Itoa(128<<20))
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if r := ctr(t, "task", "delete", "--force", id); r.Code != 0 && !r.notFound() {
		t.Fatalf("task delete --force after the shim died: %v", r)
	}
	mustCtr(t, "container", "delete", id)
	if err := eventually(func() error {
		if _, err := os.Stat(cgroupDir(cg, "memory")); !os.IsNotExist(err) {
			return fmt.Errorf("host cgroup %s still there (%v)", cg, err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

var runDirRE = regexp.MustCompile(`/run/msb/(pool/)?vm/[0-9a-f]+/`)

// TestConsoleFlood: a privileged container writes to the guest's console
// (hvc0, through a /dev/console node it makes) for 30 s; the console log
// in /run, which is RAM, never passes its cap and keeps the newest output.
func TestConsoleFlood(t *testing.T) {
	skipUnlessMSB(t, "runc's /dev/console is the host's")
	id := newID(t)
	vmm, _, _ := vmmCgroup(t, id, "--privileged", "--privileged-without-host-devices")
	dir := runDirRE.FindString(vmm.cmdline)
	if dir == "" {
		t.Fatalf("no run directory in the VMM's command line %q", vmm.cmdline)
	}
	log := filepath.Join(dir, "console.log")
	var (
		mu      sync.Mutex
		largest int64
		stop    = make(chan struct{})
		sampled = make(chan struct{})
	)
	go func() {
		defer close(sampled)
		for {
			if st, err := os.Stat(log); err == nil {
				mu.Lock()
				largest = max(largest, st.Size())
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	const line = "console flood 0123456789abcdefghijklmnopqrstuvwxyz"
	r := ctr(t, "task", "exec", "--exec-id", "flood", id, "sh", "-c",
		"mknod /tmp/console c 5 1 && timeout 30 yes '"+line+"' > /tmp/console; echo done")
	close(stop)
	<-sampled
	if r.Code != 0 || !strings.Contains(r.Stdout, "done") {
		t.Fatalf("console flood: %v", r)
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("console log: %d bytes at the end, %d at most (cap %d)", len(got), largest, vm.ConsoleLogMax)
	if largest > vm.ConsoleLogMax || len(got) > vm.ConsoleLogMax {
		t.Errorf("console log reached %d bytes, over its cap of %d", max(largest, int64(len(got))), vm.ConsoleLogMax)
	}
	// The flood filled it past the cap: the boot's output is gone and half
	// the cap, at least, of the newest output is kept.
	if len(got) < vm.ConsoleLogMax/2 || bytes.Contains(got, []byte("msb-agent")) {
		t.Errorf("console log of %d bytes still holds the boot's output, or the flood did not reach it", len(got))
	}
	if !bytes.Contains(got[max(0, len(got)-1024):], []byte(line)) {
		t.Errorf("console log does not end with the flood: %q", got[max(0, len(got)-200):])
	}
}
