package task

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// process is the host's view of one guest process, init or exec. Its
// life is one state machine (process_state.go): created → running ⇄
// paused → stopped → deleted, a type per state implementing the calls
// legal in it. The guest is the source of truth: only its report of the
// exit (or the host settling one the guest can no longer report: the VM
// is gone, the process never started) leads to stopped, and an exec's
// Delete has the agent forget it then.
type process struct {
	cid, execID string
	spec        *specs.Process
	stdio       stdio
	sb          sandbox.Sandbox
	// onExit publishes the exit; it is called with mu held, with what it
	// needs as arguments.
	onExit func(p *process, status uint32, at time.Time)

	// reported is closed once the guest reported the exit, or the exit
	// was settled on the host. A SIGKILL that is not followed by it in
	// time ends the VM.
	reported     chan struct{}
	reportedOnce sync.Once
	// escalating is set once a SIGKILL started the wait for that report.
	escalating atomic.Bool
	// exited is closed once the exit is recorded (stopped).
	exited chan struct{}

	mu          sync.Mutex
	state       procState
	pid         uint32
	io          *procIO
	exitStatus  uint32
	exitedAt    time.Time
	stdinClosed bool
}

func newProcess(sb sandbox.Sandbox, cid, execID string, spec *specs.Process, s stdio) *process {
	p := &process{
		cid: cid, execID: execID, spec: spec, stdio: s, sb: sb,
		exited: make(chan struct{}), reported: make(chan struct{}),
	}
	p.state = &createdState{p}
	return p
}

func (p *process) name() string {
	if p.execID == "" {
		return "init of " + p.cid
	}
	return "exec " + p.execID + " of " + p.cid
}

// Start starts the process in the guest; it returns the guest's pid.
func (p *process) Start(ctx context.Context) (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.start(ctx)
}

// Kill signals the process (with all, every process of its container).
// No lock is held while the guest answers: its exit may come meanwhile.
func (p *process) Kill(ctx context.Context, sig uint32, all bool) error {
	return p.current().kill(ctx, sig, all)
}

// Delete ends the process's life: its stdio is closed and the guest
// forgets an exec.
func (p *process) Delete(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.delete(ctx)
}

// Resize resizes the process's terminal.
func (p *process) Resize(ctx context.Context, w, h uint32) error {
	return p.current().resize(ctx, w, h)
}

// SetExited records the exit once; it reports whether this call did.
func (p *process) SetExited(status uint32, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.setExited(status, at)
}

// setPaused follows the container's freezer: running ⇄ paused.
func (p *process) setPaused(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.setPaused(paused)
}

func (p *process) current() procState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

func (p *process) status() task.Status { return p.current().status() }

// snapshot is the process as State reports it.
func (p *process) snapshot() (task.Status, uint32, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.status(), p.pid, p.exitStatus, p.exitedAt
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

// exitReported marks the guest's report of the exit.
func (p *process) exitReported() {
	p.reportedOnce.Do(func() { close(p.reported) })
}

// setPid records the pid containerd sees before the process starts (the
// VMM's, for an init process).
func (p *process) setPid(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid = pid
}

// stdioCopier returns the process's stdio copier; nil before it started.
func (p *process) stdioCopier() *procIO {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.io
}

// closeStdin is CloseIO's: stdin ends once the clients have closed the
// FIFO, also when CloseIO came before the process started.
func (p *process) closeStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stdinClosed = true
	p.io.endStdin()
}

// startInGuest opens the process's stdio streams, then starts it; called
// with p.mu held.
func (p *process) startInGuest(ctx context.Context) (uint32, error) {
	spec, err := json.Marshal(p.spec)
	if err != nil {
		return 0, fmt.Errorf("encode process: %w", err)
	}
	agent := p.sb.Agent()
	pio, err := openIO(ctx, agent, p.cid, p.execID, p.stdio)
	if err != nil {
		return 0, fmt.Errorf("open stdio: %w", err)
	}
	in, out, errOut := p.stdio.flags()
	actx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
	defer cancel()
	resp, err := agent.StartProcess(actx, &api.StartProcessRequest{
		ContainerId: p.cid, ExecId: p.execID, Process: spec, Stdin: in, Stdout: out, Stderr: errOut,
	})
	if err != nil {
		pio.close()
		return 0, fmt.Errorf("start %s in the VM: %w", p.name(), errgrpc.ToNative(err))
	}
	p.io = pio
	if p.stdinClosed {
		pio.endStdin()
	}
	return resp.GetPid(), nil
}

// signal has the agent signal the process.
func (p *process) signal(ctx context.Context, sig uint32, all bool) error {
	actx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
	defer cancel()
	_, err := p.sb.Agent().SignalProcess(actx, &api.SignalProcessRequest{
		ContainerId: p.cid, ExecId: p.execID, Signal: sig, All: all && p.execID == "",
	})
	if err != nil {
		return fmt.Errorf("signal %s: %w", p.name(), errgrpc.ToNative(err))
	}
	return nil
}

// forget has the agent forget an exec that has exited; a guest that is
// gone, or never knew it, has nothing to forget.
func (p *process) forget(ctx context.Context) {
	if p.execID == "" || p.sb.Ending() {
		return
	}
	actx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
	defer cancel()
	_, err := p.sb.Agent().DeleteProcess(actx, &api.ProcessRequest{ContainerId: p.cid, ExecId: p.execID})
	if err = errgrpc.ToNative(err); err != nil && !errdefs.IsNotFound(err) {
		log.G(ctx).WithError(err).Warnf("delete %s in the VM", p.name())
	}
}

// resizeInGuest resizes the process's terminal in the guest.
func (p *process) resizeInGuest(ctx context.Context, w, h uint32) error {
	actx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
	defer cancel()
	_, err := p.sb.Agent().ResizePty(actx, &api.ResizePtyRequest{ContainerId: p.cid, ExecId: p.execID, Width: w, Height: h})
	if err != nil {
		return fmt.Errorf("resize the terminal of %s: %w", p.name(), errgrpc.ToNative(err))
	}
	return nil
}

// record records the exit, releases Wait and, unless the process never
// started (nobody waits for its exit event), reports it; called with p.mu
// held.
func (p *process) record(status uint32, at time.Time, report bool) {
	p.exitStatus, p.exitedAt = status, at
	p.state = &stoppedState{p}
	if report && p.onExit != nil {
		p.onExit(p, status, at) // queued before any Wait returns
	}
	close(p.exited)
	p.exitReported()
}
