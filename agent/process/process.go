// Package process starts and supervises container processes in the guest:
// the re-exec'd setup stage, stdio over the host's streams, exit statuses
// from the agent's single reaper, and a per-process state machine
// (created → running → stopped → deleted) that rejects illegal calls.
package process

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// State is where a process is in its life.
type State int

const (
	// Created: registered, not started (or starting) yet.
	Created State = iota
	// Running: its program was exec'd.
	Running
	// Stopped: it exited; its status is known.
	Stopped
	// Deleted: forgotten, or it failed to start.
	Deleted
)

func (s State) String() string {
	return [...]string{"created", "running", "stopped", "deleted"}[s]
}

// ErrFinished is what signalling a process that has exited returns; the
// host recognises its NotFound kind and message, like containerd's shim.
var ErrFinished = errdefs.ErrNotFound.WithMessage("process already finished")

// Process is one container process (the init process or an exec).
type Process struct {
	ID string // exec id; "" for the init process

	mu       sync.Mutex
	state    State
	pid      int
	pidfd    int // -1 once closed
	terminal bool
	io       *procIO
	exit     Exit
	startErr error
	starting bool
	done     chan struct{} // closed once exited and drained, or failed to start
}

// New returns a process in the created state.
func New(id string) *Process {
	return &Process{ID: id, pidfd: -1, done: make(chan struct{})}
}

func (p *Process) name() string {
	if p.ID == "" {
		return "init process"
	}
	return fmt.Sprintf("exec process %q", p.ID)
}

// State returns the current state.
func (p *Process) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Pid is the guest pid (0 before it runs).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Wait returns the exit once the process has exited and its output has
// been drained and its streams closed.
func (p *Process) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.startErr != nil {
		return Exit{}, fmt.Errorf("%s did not start: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	return p.exit, nil
}

// ExitedAt is when the process exited (zero before).
func (p *Process) ExitedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit.At
}

// Done is closed once Wait would return.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig through the pidfd, so a recycled pid is never hit.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case Created:
		return fmt.Errorf("%s is not running yet: %w", p.name(), errdefs.ErrFailedPrecondition)
	case Stopped:
		return ErrFinished
	case Deleted:
		return fmt.Errorf("%s was deleted: %w", p.name(), errdefs.ErrNotFound)
	}
	err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return ErrFinished
	}
	if err != nil {
		return fmt.Errorf("signal %d to %s (pid %d): %w", sig, p.name(), p.pid, err)
	}
	return nil
}

// CloseStdin closes the process's stdin after what the host sent so far.
func (p *Process) CloseStdin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case Created:
		return fmt.Errorf("%s is not running yet: %w", p.name(), errdefs.ErrFailedPrecondition)
	case Deleted:
		return fmt.Errorf("%s was deleted: %w", p.name(), errdefs.ErrNotFound)
	}
	p.io.closeStdin()
	return nil
}

// Resize sets the size of the process's terminal.
func (p *Process) Resize(width, height uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.state == Created:
		return fmt.Errorf("%s is not running yet: %w", p.name(), errdefs.ErrFailedPrecondition)
	case p.state == Deleted:
		return fmt.Errorf("%s was deleted: %w", p.name(), errdefs.ErrNotFound)
	case !p.terminal:
		return fmt.Errorf("%s has no terminal: %w", p.name(), errdefs.ErrFailedPrecondition)
	case p.state == Stopped:
		return ErrFinished
	}
	return resizePty(p.io.master, width, height)
}

// Delete forgets a stopped process.
func (p *Process) Delete() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case Created, Running:
		return fmt.Errorf("%s is %s: %w", p.name(), p.state, errdefs.ErrFailedPrecondition)
	case Deleted:
		return fmt.Errorf("%s was deleted: %w", p.name(), errdefs.ErrNotFound)
	}
	p.state = Deleted
	return nil
}

// claim marks a created process as starting, once.
func (p *Process) claim() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != Created || p.starting {
		return fmt.Errorf("%s was already started: %w", p.name(), errdefs.ErrAlreadyExists)
	}
	p.starting = true
	return nil
}

// Abort fails a created process that will not be started (its streams
// never came, say), releasing anyone waiting on it.
func (p *Process) Abort(err error) {
	p.mu.Lock()
	if p.state != Created || p.starting {
		p.mu.Unlock()
		return
	}
	p.starting = true
	p.mu.Unlock()
	p.fail(err)
}

// fail records that the process could not start.
func (p *Process) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = Deleted
	p.startErr = err
	close(p.done)
}

// running records a started process.
func (p *Process) running(pid, pidfd int, pio *procIO, terminal bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = Running
	p.pid = pid
	p.pidfd = pidfd
	p.io = pio
	p.terminal = terminal
}

// stopped records the exit; from now on signals fail with ErrFinished.
func (p *Process) stopped(e Exit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = Stopped
	p.exit = e
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}
