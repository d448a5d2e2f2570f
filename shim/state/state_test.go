package state

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestWriteReadCleanup(t *testing.T) {
	bundle := t.TempDir()
	if _, err := Read(bundle); !errdefs.IsNotFound(err) {
		t.Fatalf("empty bundle: %v", err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	// A pid that is not ours (this test's own) must never be killed.
	if err := Write(bundle, &State{VMMPid: os.Getpid(), RunDir: run}); err != nil {
		t.Fatal(err)
	}
	st, err := Read(bundle)
	if err != nil || st.VMMPid != os.Getpid() || st.RunDir != run {
		t.Fatalf("read back %+v, %v", st, err)
	}
	if err := st.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Errorf("run dir left: %v", err)
	}
	if _, err := Read(bundle); !errdefs.IsNotFound(err) {
		t.Errorf("state left: %v", err)
	}
}

// A VMM whose pid was never recorded (the shim died during boot) is still
// found by its run directory and killed.
func TestCleanupKillsUnrecordedVMM(t *testing.T) {
	bundle := t.TempDir()
	run := filepath.Join(t.TempDir(), "run-unrecorded")
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	// Names the run dir in its command line, as a VMM does.
	cmd := exec.Command("sh", "-c", "while :; do sleep 1; done", run)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// Until it has exec'd, the child's command line is this test's.
	for deadline := time.Now().Add(5 * time.Second); !ownsPid(cmd.Process.Pid, run); {
		if time.Now().After(deadline) {
			t.Fatal("the child never showed the run directory in its command line")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := Write(bundle, &State{RunDir: run}); err != nil {
		t.Fatal(err)
	}
	st, err := Read(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the process naming the run directory was not killed")
	}
}

func TestSplit(t *testing.T) {
	s := &State{VMMPid: 7, RunDir: "/run/msb/vm/x", TapIn: "/ns", NetNS: "/ns",
		HostMounts: []string{"/sh/w/sb/m1", "/b/rootfs", "/sh/r", "/sh/w"},
		Dirs:       []string{"/sh/w/sb/m1", "/sh/w/sb", "/sh/r", "/sh/w", "/sh"}, bundle: "/b"}
	own, vm := s.Split("/sh/r", "/sh/w", "/sh")
	if own.VMMPid != 0 || own.RunDir != "" || own.TapIn != "" || own.NetNS != "" || own.bundle != "" ||
		!slices.Equal(own.HostMounts, []string{"/sh/w/sb/m1", "/b/rootfs"}) || !slices.Equal(own.Dirs, []string{"/sh/w/sb/m1", "/sh/w/sb"}) {
		t.Fatalf("container part %+v", own)
	}
	if vm.VMMPid != 7 || vm.RunDir != s.RunDir || vm.NetNS != "/ns" || !slices.Equal(vm.HostMounts, []string{"/sh/r", "/sh/w"}) ||
		!slices.Equal(vm.Dirs, []string{"/sh/r", "/sh/w", "/sh"}) || vm.bundle != "/b" {
		t.Fatalf("VM part %+v", vm)
	}
}

func TestOwnerRunning(t *testing.T) {
	if os.Getenv("MSB_TEST_SLEEP") != "" {
		time.Sleep(time.Minute) // the "owning shim" of the parent test
		return
	}
	if (&State{ShimPid: os.Getpid()}).OwnerRunning() {
		t.Fatal("the process itself counts as another owner")
	}
	if (&State{ShimPid: 1}).OwnerRunning() {
		t.Fatal("pid 1, not started at the recorded time, counts as the owning shim")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnerRunning$")
	cmd.Env = append(os.Environ(), "MSB_TEST_SLEEP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	owner := &State{ShimPid: cmd.Process.Pid, ShimStart: start}
	if !owner.OwnerRunning() {
		t.Error("another process of the same binary does not count as the owning shim")
	}
	// The same pid started at another time is another process.
	if (&State{ShimPid: cmd.Process.Pid, ShimStart: start + 1}).OwnerRunning() {
		t.Error("a reused pid counts as the owning shim")
	}
	// Killed but not reaped yet: a zombie with the same pid and start
	// time, which no longer runs the VM.
	cmd.Process.Kill()
	for i := 0; i < 200; i++ {
		if st, err := readStat(cmd.Process.Pid); err == nil && st.state == 'Z' {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if owner.OwnerRunning() {
		t.Error("an owner that was killed (a zombie) still counts")
	}
	cmd.Wait()
	if owner.OwnerRunning() {
		t.Error("an owner that exited still counts")
	}
}
