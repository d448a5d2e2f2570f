package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func ptr[T any](v T) *T { return &v }

func TestSettings(t *testing.T) {
	got := Settings(&specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: ptr(int64(256 << 20)), Swap: ptr(int64(512 << 20))},
		CPU:     &specs.LinuxCPU{Shares: ptr(uint64(1024)), Quota: ptr(int64(50000)), Cpus: "0-1"},
		Pids:    &specs.LinuxPids{Limit: ptr(int64(-1))},
		Unified: map[string]string{"memory.high": "200000000"},
	})
	want := map[string]string{
		"memory.max": "268435456", "memory.swap.max": "268435456", "cpu.weight": "39",
		"cpu.max": "50000 100000", "cpuset.cpus": "0-1", "pids.max": "max", "memory.high": "200000000",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Settings = %v\nwant %v", got, want)
	}
	if s := Settings(nil); len(s) != 0 {
		t.Fatalf("Settings(nil) = %v", s)
	}
	if s := Settings(&specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr(uint64(20000))}}); s["cpu.max"] != "max 20000" {
		t.Fatalf("period only: %v", s)
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestApplyRejectsPaths(t *testing.T) {
	g := &Group{Path: t.TempDir()}
	if err := g.Apply(map[string]string{"../escape": "1"}); err == nil {
		t.Fatal("a path outside the group was accepted")
	}
	if err := g.Apply(map[string]string{"pids.max": "10"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(g.Path, "pids.max")); string(b) != "10" {
		t.Fatalf("pids.max = %q", b)
	}
	// A guest kernel without swap has no memory.swap.max: CRI's swap
	// limit is skipped, not an error.
	if err := g.Apply(map[string]string{"memory.max": "1000", "memory.swap.max": "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(g.Path, "memory.swap.max")); !os.IsNotExist(err) {
		t.Fatalf("memory.swap.max was written: %v", err)
	}
}

// v2Root finds a writable cgroup2 hierarchy on this machine.
func v2Root(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	t.Skip("no cgroup2 hierarchy")
	return ""
}

func TestRootGroupLifecycle(t *testing.T) {
	parent := filepath.Join(v2Root(t), fmt.Sprintf("msb-test-%d", os.Getpid()))
	defer os.Remove(parent)
	g, err := Create(parent, "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove(time.Second)
	if _, err := Create(parent, "c1"); err == nil {
		t.Fatal("second create of the same group succeeded")
	}
	if pop, err := g.Populated(); err != nil || pop {
		t.Fatalf("new group populated=%v err=%v", pop, err)
	}
	if pids, err := g.Pids(); err != nil || len(pids) != 0 {
		t.Fatalf("pids %v err %v", pids, err)
	}
	if err := g.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path); !os.IsNotExist(err) {
		t.Fatalf("group still there: %v", err)
	}
}

// TestRootFreeze freezes a real group with a process in it.
func TestRootFreeze(t *testing.T) {
	parent := filepath.Join(v2Root(t), fmt.Sprintf("msb-test-%d", os.Getpid()))
	defer os.Remove(parent)
	g, err := Create(parent, "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove(time.Second)
	f, err := g.Open()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	err = cmd.Start()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if pids, err := g.Pids(); err != nil || !reflect.DeepEqual(pids, []int{cmd.Process.Pid}) {
		t.Fatalf("Pids = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	if _, err := os.Stat(filepath.Join(g.Path, "cgroup.freeze")); err != nil {
		t.Skip("kernel without the cgroup2 freezer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Stats(); err != nil {
		t.Fatalf("stats of a frozen group: %v", err)
	}
	if err := g.Thaw(); err != nil {
		t.Fatal(err)
	}
	if v, err := g.event("frozen"); err != nil || v != "0" {
		t.Fatalf("after Thaw frozen=%q %v", v, err)
	}
	// A frozen group still dies whole.
	if err := g.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}
