package task

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// process is the host's view of one guest process, init or exec. Its
// state machine is created → running → stopped; the guest's word on exit
// is the only way to stopped.
type process struct {
	cid, execID string
	spec        *specs.Process
	stdio       stdio
	io          *procIO

	// reported is closed once the guest reported the exit, which is
	// recorded once the output is drained, or the exit was settled on the
	// host. A SIGKILL that is not followed by it in time ends the VM.
	reported     chan struct{}
	reportedOnce sync.Once
	// escalating is set once a SIGKILL started the wait for that report.
	escalating atomic.Bool

	mu         sync.Mutex
	status     task.Status
	pid        uint32
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{}
	// stdinClosed records CloseIO of stdin.
	stdinClosed bool
}

func newProcess(cid, execID string, spec *specs.Process, s stdio) *process {
	return &process{
		cid: cid, execID: execID, spec: spec, stdio: s, status: task.Status_CREATED,
		exited: make(chan struct{}), reported: make(chan struct{}),
	}
}

// exitReported marks the guest's report of the exit.
func (p *process) exitReported() {
	p.reportedOnce.Do(func() { close(p.reported) })
}

func (p *process) started(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid, p.status = pid, task.Status_RUNNING
}

// setExited records the exit once; later calls are ignored.
func (p *process) setExited(status uint32, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return false
	}
	p.status, p.exitStatus, p.exitedAt = task.Status_STOPPED, status, at
	close(p.exited)
	p.exitReported()
	return true
}

func (p *process) setPaused(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case paused && p.status == task.Status_RUNNING:
		p.status = task.Status_PAUSED
	case !paused && p.status == task.Status_PAUSED:
		p.status = task.Status_RUNNING
	}
}

func (p *process) state() (task.Status, uint32, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.pid, p.exitStatus, p.exitedAt
}

// wait blocks until the process exited or ctx ends.
func (p *process) wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// requireStatus fails unless the process is in one of the states.
func (p *process) requireStatus(op string, ok ...task.Status) error {
	st, _, _, _ := p.state()
	for _, s := range ok {
		if st == s {
			return nil
		}
	}
	return errdefs.ErrFailedPrecondition.WithMessage(op + ": process is " + st.String())
}

func (p *process) name() string {
	if p.execID == "" {
		return "init of " + p.cid
	}
	return "exec " + p.execID + " of " + p.cid
}

// setPid records the pid containerd sees before the process starts (the
// VMM's, for an init process).
func (p *process) setPid(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid = pid
}

func (p *process) setIO(pio *procIO) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.io = pio
	if p.stdinClosed {
		pio.endStdin()
	}
}

// closeStdin is CloseIO's: stdin ends once the clients have closed the
// FIFO, also when CloseIO came before the process started.
func (p *process) closeStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stdinClosed = true
	p.io.endStdin()
}

// stdioCopier returns the process's stdio copier; nil before it started.
func (p *process) stdioCopier() *procIO {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.io
}
