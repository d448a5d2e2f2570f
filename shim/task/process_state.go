package task

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
)

// A process's states, in the style of containerd's runc shim
// (process/init_state.go): each type implements the calls legal in its
// state and refuses the rest, so no call site checks a status. The
// process's mutex is held in every method but kill and resize, which talk
// to the guest without it.
type procState interface {
	status() task.Status
	start(ctx context.Context) (uint32, error)
	kill(ctx context.Context, sig uint32, all bool) error
	resize(ctx context.Context, w, h uint32) error
	delete(ctx context.Context) error
	setExited(status uint32, at time.Time) bool
	setPaused(paused bool)
}

func notRunning(p *process, op string, st task.Status) error {
	return fmt.Errorf("%s %s: it is %s: %w", op, p.name(), st, errdefs.ErrFailedPrecondition)
}

func finished(p *process) error {
	return fmt.Errorf("%s: process already finished: %w", p.name(), errdefs.ErrNotFound)
}

// created: registered, nothing runs in the guest yet.
type createdState struct{ p *process }

func (s *createdState) status() task.Status { return task.Status_CREATED }

func (s *createdState) start(ctx context.Context) (uint32, error) {
	pid, err := s.p.startInGuest(ctx)
	if err != nil {
		return 0, err
	}
	if s.p.execID != "" {
		s.p.pid = pid // an init's is the VMM's: the task's host process
	}
	s.p.state = &runningState{s.p}
	return s.p.pid, nil
}

// kill ends a process before it started, as runc's kill of a created
// container does.
func (s *createdState) kill(_ context.Context, sig uint32, _ bool) error {
	s.p.SetExited(128+sig, time.Now())
	return nil
}

func (s *createdState) resize(context.Context, uint32, uint32) error {
	return notRunning(s.p, "resize", task.Status_CREATED)
}

// delete settles a process that never started as killed, so no Wait
// hangs on it; the guest never knew it.
func (s *createdState) delete(context.Context) error {
	s.p.record(128+uint32(syscall.SIGKILL), time.Now(), false)
	s.p.state = &deletedState{s.p}
	return nil
}

func (s *createdState) setExited(status uint32, at time.Time) bool {
	s.p.record(status, at, true)
	return true
}

func (s *createdState) setPaused(bool) {}

// running: started in the guest.
type runningState struct{ p *process }

func (s *runningState) status() task.Status { return task.Status_RUNNING }

func (s *runningState) start(context.Context) (uint32, error) {
	return 0, fmt.Errorf("start %s: it was started already: %w", s.p.name(), errdefs.ErrFailedPrecondition)
}

func (s *runningState) kill(ctx context.Context, sig uint32, all bool) error {
	return s.p.signal(ctx, sig, all)
}

func (s *runningState) resize(ctx context.Context, w, h uint32) error {
	return s.p.resizeInGuest(ctx, w, h)
}

func (s *runningState) delete(context.Context) error {
	return notRunning(s.p, "delete", task.Status_RUNNING)
}

func (s *runningState) setExited(status uint32, at time.Time) bool {
	s.p.record(status, at, true)
	return true
}

func (s *runningState) setPaused(paused bool) {
	if paused {
		s.p.state = &pausedState{runningState{s.p}}
	}
}

// paused: frozen with its container; signals and resizes still reach it.
type pausedState struct{ runningState }

func (s *pausedState) status() task.Status { return task.Status_PAUSED }

func (s *pausedState) delete(context.Context) error {
	return notRunning(s.p, "delete", task.Status_PAUSED)
}

func (s *pausedState) setPaused(paused bool) {
	if !paused {
		s.p.state = &runningState{s.p}
	}
}

// stopped: its exit is recorded.
type stoppedState struct{ p *process }

func (s *stoppedState) status() task.Status { return task.Status_STOPPED }

func (s *stoppedState) start(context.Context) (uint32, error) {
	return 0, notRunning(s.p, "start", task.Status_STOPPED)
}

func (s *stoppedState) kill(context.Context, uint32, bool) error { return finished(s.p) }

func (s *stoppedState) resize(context.Context, uint32, uint32) error {
	return notRunning(s.p, "resize", task.Status_STOPPED)
}

// delete closes the stdio once its output is through and has the guest
// forget an exec.
func (s *stoppedState) delete(ctx context.Context) error {
	s.p.io.wait()
	s.p.io.close()
	s.p.forget(ctx)
	s.p.state = &deletedState{s.p}
	return nil
}

func (s *stoppedState) setExited(uint32, time.Time) bool { return false }
func (s *stoppedState) setPaused(bool)                   {}

// deleted: gone for containerd and the guest.
type deletedState struct{ p *process }

func (s *deletedState) status() task.Status { return task.Status_STOPPED }

func (s *deletedState) gone() error {
	return fmt.Errorf("%s was deleted: %w", s.p.name(), errdefs.ErrNotFound)
}

func (s *deletedState) start(context.Context) (uint32, error)        { return 0, s.gone() }
func (s *deletedState) kill(context.Context, uint32, bool) error     { return s.gone() }
func (s *deletedState) resize(context.Context, uint32, uint32) error { return s.gone() }
func (s *deletedState) delete(context.Context) error                 { return s.gone() }
func (s *deletedState) setExited(uint32, time.Time) bool             { return false }
func (s *deletedState) setPaused(bool)                               {}
