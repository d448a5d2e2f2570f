package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestPidsRecursive(t *testing.T) {
	g := fakeGroup(t, map[string]string{
		"cgroup.procs":         "12\n7\n",
		"sub/cgroup.procs":     "30\n",
		"sub/sub/cgroup.procs": "",
	})
	pids, err := g.Pids()
	if err != nil || !reflect.DeepEqual(pids, []int{12, 7, 30}) {
		t.Fatalf("Pids = %v, %v", pids, err)
	}
}

func TestStats(t *testing.T) {
	g := fakeGroup(t, map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
		"memory.current": "4096\n",
		"memory.max":     "max\n",
		"memory.stat":    "anon 1024\nfile 2048\n",
		"memory.events":  fmtEvents(4),
		"pids.current":   "3\n",
		"pids.max":       "100\n",
	})
	m, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if m.CPU.UsageUsec != 1500 || m.CPU.SystemUsec != 500 || m.Memory.Usage != 4096 || m.Memory.Anon != 1024 ||
		m.Memory.File != 2048 || m.MemoryEvents.OomKill != 4 || m.Pids.Current != 3 || m.Pids.Limit != 100 {
		t.Fatalf("Stats = %v", m)
	}
	// Without controllers (a guest lacking them) the counts read as zero.
	if m, err := fakeGroup(t, nil).Stats(); err != nil || m.CPU.UsageUsec != 0 || m.MemoryEvents != nil {
		t.Fatalf("bare Stats = %v, %v", m, err)
	}
}

func TestFreezeWaitsForFrozen(t *testing.T) {
	g := fakeGroup(t, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	done := make(chan error, 1)
	go func() { done <- g.Freeze(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Freeze returned before the group froze: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if b, _ := os.ReadFile(filepath.Join(g.Path, "cgroup.freeze")); string(b) != "1" {
		t.Fatalf("cgroup.freeze = %q", b)
	}
	rewrite(t, g, "cgroup.events", "populated 1\nfrozen 1\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := g.Thaw(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(g.Path, "cgroup.freeze")); string(b) != "0" {
		t.Fatalf("cgroup.freeze after Thaw = %q", b)
	}
}

func TestFreezeTimeoutThaws(t *testing.T) {
	g := fakeGroup(t, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := g.Freeze(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Freeze = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(g.Path, "cgroup.freeze")); string(b) != "0" {
		t.Fatalf("left half frozen: cgroup.freeze = %q", b)
	}
	if err := fakeGroup(t, nil).Freeze(context.Background()); err == nil {
		t.Fatal("Freeze without cgroup.events succeeded")
	}
}
