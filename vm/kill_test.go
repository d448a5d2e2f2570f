package vm

import (
	"os/exec"
	"testing"
	"time"
)

// KillNaming kills what names the directory (as an argument or a path
// below it), not a process naming a sibling that only starts like it.
func TestKillNaming(t *testing.T) {
	dir := t.TempDir()
	start := func(arg string) chan struct{} {
		cmd := exec.Command("sh", "-c", "while :; do sleep 1; done", arg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		for deadline := time.Now().Add(5 * time.Second); !NamesDir(cmd.Process.Pid, arg); {
			if time.Now().After(deadline) {
				t.Fatalf("the child never showed %s in its command line", arg)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return done
	}
	exact, below, sibling := start(dir), start(dir+"/vmm.json"), start(dir+"x/vmm.json")
	KillNaming(dir)
	for name, done := range map[string]chan struct{}{"the directory": exact, "a path below it": below} {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("a process naming %s still runs", name)
		}
	}
	select {
	case <-sibling:
		t.Error("a process naming a sibling directory was killed")
	case <-time.After(100 * time.Millisecond):
	}
}
