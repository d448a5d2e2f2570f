package task

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
)

func TestProcessLifecycle(t *testing.T) {
	p := newProcess("c1", "", nil, stdio{})
	if err := p.requireStatus("exec", task.Status_RUNNING); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("created process passed a running check: %v", err)
	}
	p.started(42)
	p.setPaused(true)
	if st, pid, _, _ := p.state(); st != task.Status_PAUSED || pid != 42 {
		t.Fatalf("state %v pid %d", st, pid)
	}
	p.setPaused(false)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.wait(ctx); err == nil {
		t.Fatal("wait returned before the exit")
	}
	at := time.Now()
	if !p.setExited(3, at) {
		t.Fatal("first exit not recorded")
	}
	if p.setExited(137, time.Now()) {
		t.Fatal("second exit recorded")
	}
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _, status, got := p.state(); st != task.Status_STOPPED || status != 3 || !got.Equal(at) {
		t.Fatalf("state %v status %d at %v", st, status, got)
	}
	p.setPaused(true)
	if st, _, _, _ := p.state(); st != task.Status_STOPPED {
		t.Fatalf("a stopped process was paused: %v", st)
	}
}
