//go:build vmtest

package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
)

// cgroupOf is pid's cgroup in the memory hierarchy (v1) or v2's.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && ((cgroups.Mode() == cgroups.Unified && f[0] == "0") || f[1] == "memory") {
			return f[2]
		}
	}
	t.Fatalf("pid %d: no memory cgroup in %q", pid, b)
	return ""
}

// cgroupFile reads a file of the host cgroup: v1 name in controller's
// hierarchy, else v2 name.
func cgroupFile(t *testing.T, cg, controller, v1, v2 string) string {
	t.Helper()
	p := filepath.Join(v2Root, cg, v2)
	if cgroups.Mode() != cgroups.Unified {
		p = filepath.Join(v2Root, controller, cg, v1)
	}
	b, err := os.ReadFile(p)
	must(t, err)
	return strings.TrimSpace(string(b))
}

// The VMM and virtiofsd run in the VM's host cgroup, with its memory limit
// and CPU quota, while the guest fills its memory; the cgroup goes with
// the VM.
func TestVMHostCgroup(t *testing.T) {
	cg := fmt.Sprintf("/msb-vmtest/%svm%d", CgroupPrefix, os.Getpid())
	t.Cleanup(func() {
		_ = RemoveHostCgroup(cg)
		parents, _ := filepath.Glob(filepath.Join(v2Root, "*", filepath.Dir(cg)))
		for _, p := range append(parents, filepath.Join(v2Root, filepath.Dir(cg))) {
			_ = os.Remove(p) // empty by now; another run's is not
		}
	})
	shared := t.TempDir()
	f := bootWith(t, BackendAuto, func(s *Spec) {
		s.Host = HostLimits{Cgroup: cg, CPUQuota: 50000, CPUPeriod: 100000}
		s.Shares = []Share{{Tag: "shared", Path: shared}}
	})
	pids := f.vm.proc.pids()
	if len(pids) != 2 {
		t.Fatalf("want the VMM and one virtiofsd, got pids %v", pids)
	}
	for _, pid := range pids {
		if got := cgroupOf(t, pid); got != cg {
			t.Errorf("pid %d runs in cgroup %s, want %s", pid, got, cg)
		}
	}
	wantLimit := strconv.FormatInt(int64(256+VMMOverheadMiB)<<20, 10)
	if got := cgroupFile(t, cg, "memory", "memory.limit_in_bytes", "memory.max"); got != wantLimit {
		t.Errorf("memory limit %s, want %s", got, wantLimit)
	}
	cpu := cgroupFile(t, cg, "cpu", "cpu.cfs_quota_us", "cpu.max")
	if cgroups.Mode() != cgroups.Unified {
		cpu += " " + cgroupFile(t, cg, "cpu", "cpu.cfs_period_us", "")
	}
	if cpu != "50000 100000" {
		t.Errorf("CPU quota %q, want 50000 per 100000", cpu)
	}
	// The guest fills its memory (the shell doubles a string until the
	// guest's OOM killer ends it): the VMM stays within its limit.
	r := f.run(t, "fill", "sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done")
	if r.status == 0 {
		t.Fatalf("the memory filler ended well: %+v", r)
	}
	if f.vm.proc.exited() {
		t.Fatalf("the VMM ended: %v", f.vm.proc.endError())
	}
	if r := f.run(t, "after", "echo", "alive"); r.stdout != "alive\n" {
		t.Fatalf("the VM does not answer after the fill: %+v", r)
	}
	logOverhead(t, cg)
	f.vm.Kill()
	if _, err := os.Stat(filepath.Join(v2Root, "memory", cg)); !os.IsNotExist(err) && cgroups.Mode() != cgroups.Unified {
		t.Errorf("host cgroup %s left behind: %v", cg, err)
	}
	if _, err := os.Stat(filepath.Join(v2Root, cg)); !os.IsNotExist(err) && cgroups.Mode() == cgroups.Unified {
		t.Errorf("host cgroup %s left behind: %v", cg, err)
	}
}

// logOverhead logs what the VMM took beyond the guest's memory (the memfd
// pages QEMU backs it with are shmem), for VMMOverheadMiB.
func logOverhead(t *testing.T, cg string) {
	if cgroups.Mode() == cgroups.Unified {
		t.Logf("memory.peak %s, memory.stat:\n%s", cgroupFile(t, cg, "", "", "memory.peak"), cgroupFile(t, cg, "", "", "memory.stat"))
		return
	}
	stat := map[string]int64{}
	for _, l := range strings.Split(cgroupFile(t, cg, "memory", "memory.stat", ""), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			stat[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	usage, _ := strconv.ParseInt(cgroupFile(t, cg, "memory", "memory.usage_in_bytes", ""), 10, 64)
	peak, _ := strconv.ParseInt(cgroupFile(t, cg, "memory", "memory.max_usage_in_bytes", ""), 10, 64)
	t.Logf("host cgroup: usage %d MiB (peak %d MiB): guest RAM (shmem) %d MiB, anon %d MiB, page cache %d MiB, kernel %s; usage less guest RAM %d MiB",
		usage>>20, peak>>20, stat["total_shmem"]>>20, stat["total_rss"]>>20, (stat["total_cache"]-stat["total_shmem"])>>20,
		cgroupFile(t, cg, "memory", "memory.kmem.usage_in_bytes", ""), (usage-stat["total_shmem"])>>20)
}
