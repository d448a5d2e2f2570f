//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msb-runtime/msb/pool"
)

// The warm pool (msb-pool, runtime option warm_pool): these tests run when
// a pool serves the private containerd's shims (hack/test's warm pool pass:
// hack/containerd-test starts msb-pool when $MSB_CONFIG turns it on), and
// skip otherwise. The rest of the suite runs unchanged in that pass, its
// containers in claimed VMs where they fit.

const poolExe = "msb-pool"

// poolStatus is what the running pool holds; nil when none runs.
func poolStatus() *pool.Status {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pool.GetStatus(ctx, pool.DefaultSocket)
	if err != nil {
		return nil
	}
	return st
}

func skipUnlessPool(t *testing.T) *pool.Status {
	t.Helper()
	skipUnlessMSB(t, "runc has no VMs to pool")
	st := poolStatus()
	if st == nil {
		t.Skip("no warm pool runs (hack/test's warm pool pass starts one)")
	}
	return st
}

// waitPoolFull waits until the pool holds its count of idle VMs.
func waitPoolFull(t *testing.T) *pool.Status {
	t.Helper()
	var st *pool.Status
	if err := eventually(func() error {
		if st = poolStatus(); st == nil || len(st.Ready) < st.Count {
			return fmt.Errorf("pool status %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatalf("the warm pool does not fill up: %v", err)
	}
	return st
}

// heldPids are the processes whose pidfds shim holds (0: any of our
// shims): a VM's processes adopted from the warm pool.
func heldPids(ps []proc, shim int) map[int]bool {
	held := map[int]bool{}
	for _, p := range ps {
		if (shim != 0 && p.pid != shim) || (shim == 0 && !isOurShim(p, "")) {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.pid, fd.Name())); l != "anon_inode:[pidfd]" {
				continue
			}
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", p.pid, fd.Name()))
			for _, line := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(line, "Pid:"); ok {
					if pid, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && pid > 0 {
						held[pid] = true
					}
				}
			}
		}
	}
	return held
}

// claimedFromPool lists what the warm pool handed over and no longer
// holds idle: the VMMs it started that are not idle in it, and the run and
// share directories of VMs not in it. Once their sandboxes are gone, there
// is none.
func claimedFromPool(ps []proc) (vmms, dirs []string) {
	var entries []string
	for _, d := range []string{filepath.Join(pool.Root, "vm"), filepath.Join(pool.Root, "share")} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			entries = append(entries, filepath.Join(d, e.Name()))
		}
	}
	pooled := map[string]bool{}
	if st := poolStatus(); st != nil {
		ms := st.Ready
		if st.Booting != nil {
			ms = append(ms, *st.Booting)
		}
		for _, m := range ms {
			pooled[m.RunDir], pooled[m.ShareBase] = true, true
		}
	}
	for _, e := range entries {
		if !pooled[e] {
			dirs = append(dirs, e)
		}
	}
	byPID := map[int]proc{}
	for _, p := range ps {
		byPID[p.pid] = p
	}
	for _, p := range ps {
		if !slices.Contains(vmmNames, p.exe) || byPID[p.ppid].exe != poolExe {
			continue
		}
		idle := false
		for d := range pooled {
			idle = idle || strings.Contains(p.cmdline, d+"/")
		}
		if !idle {
			vmms = append(vmms, fmt.Sprintf("%d %s (claimed from the warm pool)", p.pid, p.cmdline))
		}
	}
	return vmms, dirs
}

// fromPool says whether the VMM pid was started by msb-pool: a claimed VM.
func fromPool(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return false
	}
	exe, _ := os.Readlink("/proc/" + f[1] + "/exe")
	return filepath.Base(exe) == poolExe
}

func taskPID(t *testing.T, id string) int {
	t.Helper()
	pid, err := strconv.Atoi(tasks(t)[id].PID)
	if err != nil || pid <= 0 {
		t.Fatalf("task %s has no pid: %v", id, tasks(t)[id])
	}
	return pid
}

// shimSaid returns the shim's log lines about container id that contain s.
func shimSaid(id, s string) []string {
	data, _ := os.ReadFile(ctdLog)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "container="+id) && strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func mustClaimed(t *testing.T, id string, vmm int) {
	t.Helper()
	if !fromPool(vmm) {
		t.Fatalf("container %s's VMM %d is not a claimed VM (%s)", id, vmm, strings.Join(shimSaid(id, "warm pool"), "\n"))
	}
}

// A ctr container runs in a claimed VM: its binds, its layers and its exit
// status are as in a cold one, and it leaves nothing behind.
func TestWarmPoolCtr(t *testing.T) {
	skipUnlessPool(t)
	waitPoolFull(t)
	before := captureHostState(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("bind-ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := newID(t)
	mustCtr(t, runArgs([]string{"-d", "--mount", "type=bind,src=" + dir + ",dst=/data,options=rbind:rw"}, busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
	mustClaimed(t, id, taskPID(t, id))
	r := ctr(t, "task", "exec", "--exec-id", "check", id, "sh", "-c", "cat /data/hello; echo guest >/data/new; ls /bin/busybox; exit 5")
	if r.Code != 5 || r.Stdout != "bind-ok/bin/busybox\n" {
		t.Fatalf("exec in the claimed VM: %v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "new")); string(b) != "guest\n" {
		t.Errorf("the write through the bind reached the host as %q", b)
	}
	mustCtr(t, "task", "kill", "--signal", "KILL", id)
	waitStatus(t, id, "STOPPED")
	mustCtr(t, "task", "delete", id)
	mustCtr(t, "container", "delete", id)
	checkNoLeaks(t, before)
}

// nerdctl's bridge network and -p work in a claimed VM: its tap stays in
// the VM's own namespace, which nerdctl's hook configures.
func TestWarmPoolNerdctl(t *testing.T) {
	skipUnlessPool(t)
	waitPoolFull(t)
	name, port := runPublished(t, "pooled-")
	pid, err := strconv.Atoi(strings.TrimSpace(nerdctl(t, "inspect", "--format", "{{.State.Pid}}", name).Stdout))
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(nerdctl(t, "inspect", "--format", "{{.ID}}", name).Stdout)
	mustClaimed(t, id, pid)
	checkHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), "pooled-")
}

// A CRI pod's sandbox claims a VM, whose tap moves into the pod's network
// namespace: the containers have the pod IP, a later container joins the
// VM with its layers, and port-forward reaches the pod's loopback.
func TestWarmPoolCRI(t *testing.T) {
	skipUnlessPool(t)
	criImages(t)
	waitPoolFull(t)
	before := captureHostState(t)
	p := runPod(t, "e2e-warm-pod-", map[string]any{"hostname": "warm-pod", "linux": map[string]any{}})
	var info struct {
		Status struct {
			Network struct{ IP string }
		}
		Info struct{ Pid int }
	}
	if err := json.Unmarshal([]byte(mustCrictl(t, "inspectp", p.id)), &info); err != nil || info.Status.Network.IP == "" {
		t.Fatalf("inspectp: %+v %v", info, err)
	}
	c1 := p.start(t, "c1", map[string]any{}, "sh", "-c",
		"mkdir /tmp/www; echo pf-warm >/tmp/www/index.html; httpd -p 127.0.0.1:8080 -h /tmp/www; exec sleep 100000")
	c2 := p.start(t, "c2", map[string]any{}, "sleep", "100000")
	var shims []int
	for _, pr := range procs() {
		if pr.exe == shimName() && strings.Contains(pr.cmdline, " -namespace "+criNamespace+" ") && strings.Contains(pr.cmdline, p.id) {
			shims = append(shims, pr.pid)
		}
	}
	if len(shims) != 1 {
		t.Fatalf("want one shim for the pod, found %v", shims)
	}
	vs := vmms(procs(), shims[0])
	if len(vs) != 1 {
		t.Fatalf("want one VM for the pod, found %v", vs)
	}
	mustClaimed(t, p.id, vs[0].pid)
	for _, c := range []string{c1, c2} {
		if e := crictl(t, "exec", c, "ip", "-4", "-o", "addr"); !strings.Contains(e.Stdout, " "+info.Status.Network.IP+"/") {
			t.Fatalf("container %s lacks the pod IP %s: %s", c, info.Status.Network.IP, e)
		}
	}
	if e := crictl(t, "exec", c2, "sh", "-c", "hostname; ls /bin/busybox"); e.Stdout != "warm-pod\n/bin/busybox\n" {
		t.Fatalf("the later container's root: %s", e)
	}
	checkPortForward(t, p.id, 8080, "pf-warm\n")
	mustCrictl(t, "stop", c1, c2)
	mustCrictl(t, "rm", c1, c2)
	mustCrictl(t, "stopp", p.id)
	mustCrictl(t, "rmp", p.id)
	checkNoLeaks(t, before)
}

// A sandbox whose VM is not the pool's size boots cold, and says why.
func TestWarmPoolNoFit(t *testing.T) {
	skipUnlessPool(t)
	id := newID(t)
	runCtrDetached(t, []string{"--memory-limit", strconv.Itoa(128 << 20)}, id)
	if fromPool(taskPID(t, id)) {
		t.Fatal("a 128 MiB container got a VM of the pool's size")
	}
	if said := shimSaid(id, "booting cold"); len(said) == 0 || !strings.Contains(said[0], "MiB") {
		t.Errorf("the shim did not say why it booted cold: %q", said)
	}
}

func runCtrDetached(t *testing.T, flags []string, id string) {
	t.Helper()
	mustCtr(t, runArgs(append([]string{"-d"}, flags...), busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
}

// More sandboxes at once than the pool holds: those that find it empty
// boot cold, say so, and run all the same.
func TestWarmPoolEmptyBootsCold(t *testing.T) {
	st := skipUnlessPool(t)
	waitPoolFull(t)
	n := st.Count + 3
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID(t)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for _, id := range ids {
		wg.Go(func() {
			r := ctr(t, runArgs([]string{"-d"}, busybox, id, "sleep", "300")...)
			if r.Code != 0 {
				mu.Lock()
				errs = append(errs, r.String())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("run -d: %v", errs)
	}
	claimed, cold := 0, 0
	for _, id := range ids {
		waitStatus(t, id, "RUNNING")
		if r := ctr(t, "task", "exec", "--exec-id", "x", id, "true"); r.Code != 0 {
			t.Errorf("exec in %s: %v", id, r)
		}
		if fromPool(taskPID(t, id)) {
			claimed++
		} else if said := shimSaid(id, "the pool is empty"); len(said) > 0 {
			cold++
		} else {
			t.Errorf("container %s booted cold without saying the pool was empty: %q", id, shimSaid(id, "warm pool"))
		}
	}
	t.Logf("%d containers at once on a pool of %d: %d claimed, %d cold", n, st.Count, claimed, cold)
	if claimed == 0 || cold == 0 {
		t.Errorf("want some claimed and some cold: %d claimed, %d cold", claimed, cold)
	}
}

// An idle VM that dies is dropped and replaced; its directories go.
func TestWarmPoolReplacesKilledVM(t *testing.T) {
	skipUnlessPool(t)
	victim := waitPoolFull(t).Ready[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := eventually(func() error {
		st := poolStatus()
		if st == nil || len(st.Ready) < st.Count {
			return fmt.Errorf("pool status %+v", st)
		}
		for _, m := range st.Ready {
			if m.ID == victim.ID {
				return fmt.Errorf("the killed VM %s is still idle in the pool", victim.ID)
			}
		}
		for _, d := range []string{victim.RunDir, victim.ShareBase} {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				return fmt.Errorf("%s left (%v)", d, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Each claimed VM serves one sandbox: a VM is never handed out twice, and
// is gone with its sandbox.
func TestWarmPoolVMsNotReused(t *testing.T) {
	skipUnlessPool(t)
	seen := map[string]string{}
	for range 4 {
		waitPoolFull(t)
		id := newID(t)
		runCtrDetached(t, nil, id)
		pid := taskPID(t, id)
		mustClaimed(t, id, pid)
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		dir := runDirRE.FindString(string(cmd))
		if dir == "" {
			t.Fatalf("no run directory in the VMM's command line %q", cmd)
		}
		if other, ok := seen[dir]; ok {
			t.Fatalf("VM %s served %s and again %s", dir, other, id)
		}
		seen[dir] = id
		if err := removeContainer(id); err != nil {
			t.Fatal(err)
		}
		if err := eventually(func() error {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				return fmt.Errorf("the VM's run directory %s is left (%v)", dir, err)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
}

// Claim and delete cycles leave nothing behind: no claimed VMM, run or
// share directory, cgroup or mount.
func TestWarmPoolNoLeaks(t *testing.T) {
	st := skipUnlessPool(t)
	cycles := 10
	if v := os.Getenv("MSB_E2E_LEAK_CYCLES"); v != "" {
		cycles, _ = strconv.Atoi(v)
	}
	waitPoolFull(t)
	before := captureHostState(t)
	for i := range cycles {
		if r := runCtr(t, nil, busybox, newID(t), "true"); r.Code != 0 {
			t.Fatalf("cycle %d: run --rm: %v", i, r)
		}
	}
	checkNoLeaks(t, before)
	after := poolStatus()
	if after == nil {
		t.Fatal("the pool is gone")
	}
	t.Logf("%d cycles, %d in claimed VMs", cycles, after.Claimed-st.Claimed)
	if after.Claimed == st.Claimed {
		t.Error("no cycle ran in a claimed VM")
	}
}

// msb-pool killed and started again: the VMs it held idle are destroyed
// (never handed out by the new one), a VM it had handed over keeps serving
// its sandbox, and nothing is left once that is gone.
func TestWarmPoolRestart(t *testing.T) {
	skipUnlessPool(t)
	waitPoolFull(t)
	before := captureHostState(t)
	id := newID(t)
	runCtrDetached(t, nil, id)
	vmm := taskPID(t, id)
	mustClaimed(t, id, vmm)
	st := waitPoolFull(t)
	poolPID := parentOf(vmm)
	if err := syscall.Kill(poolPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(repoRoot, "hack/containerd-test"), "start").CombinedOutput()
	if err != nil {
		t.Fatalf("hack/containerd-test start: %v\n%s", err, out)
	}
	if err := eventually(func() error {
		for _, m := range st.Ready {
			if syscall.Kill(m.Pid, 0) == nil {
				return fmt.Errorf("the old pool's idle VM %s (pid %d) still runs", m.ID, m.Pid)
			}
			if _, err := os.Stat(m.RunDir); !os.IsNotExist(err) {
				return fmt.Errorf("the old pool's idle VM %s left %s", m.ID, m.RunDir)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := ctr(t, "task", "exec", "--exec-id", "after", id, "echo", "still-here"); r.Code != 0 || r.Stdout != "still-here\n" {
		t.Fatalf("the claimed VM after the pool's restart: %v", r)
	}
	waitPoolFull(t)
	if err := removeContainer(id); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t, before)
}

func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
