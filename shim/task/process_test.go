package task

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
)

// The state machine alone: what each state accepts and refuses, and that
// an exit is recorded (and reported) once. Starting needs a guest: the
// service tests run that on a fake sandbox.
func TestProcessStates(t *testing.T) {
	ctx := context.Background()
	var reported []uint32
	p := newProcess(nil, "c1", "", nil, stdio{})
	p.onExit = func(_ *process, status uint32, _ time.Time) { reported = append(reported, status) }
	if err := p.Resize(ctx, 1, 1); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("resize of a created process: %v", err)
	}

	p.state = &runningState{p} // as createdState.start leaves it
	p.setPaused(true)
	if st := p.status(); st != task.Status_PAUSED {
		t.Fatalf("paused: %v", st)
	}
	if err := p.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a paused process: %v", err)
	}
	p.setPaused(false)
	if _, err := p.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second start: %v", err)
	}
	if err := p.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running process: %v", err)
	}

	wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := p.wait(wctx); err == nil {
		t.Fatal("wait returned before the exit")
	}
	at := time.Now()
	if !p.SetExited(3, at) || p.SetExited(137, time.Now()) {
		t.Fatal("the exit is not recorded exactly once")
	}
	if err := p.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _, status, got := p.snapshot(); st != task.Status_STOPPED || status != 3 || !got.Equal(at) || len(reported) != 1 {
		t.Fatalf("state %v status %d at %v, %d exit reports", st, status, got, len(reported))
	}
	p.setPaused(true)
	if err := p.Kill(ctx, 9, false); !errdefs.IsNotFound(err) || p.status() != task.Status_STOPPED {
		t.Fatalf("kill of a stopped process: %v (%v)", err, p.status())
	}
	if _, err := p.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("start of a stopped process: %v", err)
	}
	if err := p.Delete(ctx); err != nil {
		t.Fatalf("delete of a stopped process: %v", err)
	}
	for name, err := range map[string]error{
		"delete": p.Delete(ctx), "kill": p.Kill(ctx, 9, false), "resize": p.Resize(ctx, 1, 1),
	} {
		if !errdefs.IsNotFound(err) {
			t.Errorf("%s of a deleted process: %v", name, err)
		}
	}
}

// A process killed or deleted before it started ends there, without a
// guest: a kill reports the signal's exit, a delete reports none.
func TestProcessEndsBeforeStart(t *testing.T) {
	ctx := context.Background()
	var reported []uint32
	onExit := func(_ *process, status uint32, _ time.Time) { reported = append(reported, status) }
	killed := newProcess(nil, "c1", "", nil, stdio{})
	killed.onExit = onExit
	if err := killed.Kill(ctx, 15, false); err != nil {
		t.Fatal(err)
	}
	if _, _, status, _ := killed.snapshot(); status != 128+15 || len(reported) != 1 {
		t.Fatalf("killed before start: status %d, reports %v", status, reported)
	}
	deleted := newProcess(nil, "c1", "e1", nil, stdio{})
	deleted.onExit = onExit
	if err := deleted.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := deleted.wait(ctx); err != nil || len(reported) != 1 {
		t.Fatalf("deleted before start: wait %v, reports %v", err, reported)
	}
}
