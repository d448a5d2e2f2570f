package container

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/cgroup"
	"github.com/msb-runtime/msb/agent/process"
)

// fakeContainer is a container whose cgroup is a plain directory holding
// the given files ("" dir: no cgroup at all).
func fakeContainer(t *testing.T, dir string, files map[string]string) *Container {
	t.Helper()
	c := &Container{ID: "c1", execs: map[string]*process.Process{}}
	c.gone, c.markGone = context.WithCancel(context.Background())
	t.Cleanup(c.markGone)
	if dir == "" {
		return c
	}
	c.cgroup = &cgroup.Group{Path: dir}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestLabel(t *testing.T) {
	got := label([]int{30, 7, 12, 9}, map[int]string{7: "", 12: "e1", 99: "e2"})
	want := []PidInfo{{7, ""}, {9, ""}, {12, "e1"}, {30, ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("label = %v, want %v", got, want)
	}
	if got := label(nil, nil); len(got) != 0 {
		t.Fatalf("label(nil) = %v", got)
	}
}

func TestPidsFromCgroup(t *testing.T) {
	c := fakeContainer(t, t.TempDir(), map[string]string{"cgroup.procs": "40\n41\n"})
	pids, err := c.Pids()
	if err != nil || !reflect.DeepEqual(pids, []PidInfo{{40, ""}, {41, ""}}) {
		t.Fatalf("Pids = %v, %v", pids, err)
	}
	if pids, err := fakeContainer(t, "", nil).Pids(); err != nil || len(pids) != 0 {
		t.Fatalf("Pids without cgroup or process = %v, %v", pids, err)
	}
}

func TestWithoutCgroup(t *testing.T) {
	c := fakeContainer(t, "", nil)
	ctx := context.Background()
	for name, err := range map[string]error{
		"Pause":   c.Pause(ctx),
		"Resume":  c.Resume(),
		"Update":  c.Update(&specs.LinuxResources{}),
		"Stats":   second(c.Stats()),
		"WaitOOM": second(c.WaitOOM(ctx, 0)),
	} {
		if !errdefs.IsNotImplemented(err) {
			t.Errorf("%s without cgroup: %v", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestPauseRefusesProcesses(t *testing.T) {
	dir := t.TempDir()
	c := fakeContainer(t, dir, map[string]string{"cgroup.events": "populated 0\nfrozen 1\n"})
	if err := c.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze")); string(b) != "1" {
		t.Fatalf("cgroup.freeze = %q", b)
	}
	if _, err := c.AddProcess(""); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("start in a paused container: %v", err)
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddProcess(""); err != nil {
		t.Fatalf("start after resume: %v", err)
	}
}

func TestPauseFailureUnpauses(t *testing.T) {
	c := fakeContainer(t, t.TempDir(), map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Pause(ctx); err == nil {
		t.Fatal("Pause succeeded though the group never froze")
	}
	if _, err := c.AddProcess(""); err != nil {
		t.Fatalf("still paused after a failed Pause: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	c := fakeContainer(t, dir, nil)
	limit := int64(64)
	if err := c.Update(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pids.max")); string(b) != "64" {
		t.Fatalf("pids.max = %q", b)
	}
	if err := c.Update(&specs.LinuxResources{Unified: map[string]string{"../x": "1"}}); err == nil {
		t.Fatal("an update outside the cgroup was accepted")
	}
}

func TestWaitOOMEndsOnDelete(t *testing.T) {
	c := fakeContainer(t, t.TempDir(), map[string]string{"memory.events": "oom 0\noom_kill 2\n"})
	if n, err := c.WaitOOM(context.Background(), 1); err != nil || n != 2 {
		t.Fatalf("WaitOOM past seen = %d, %v", n, err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := c.WaitOOM(context.Background(), 2)
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.markGone() // what Destroy does
	select {
	case err := <-got:
		if !errdefs.IsNotFound(err) {
			t.Fatalf("WaitOOM after delete: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitOOM outlived its container")
	}
}
