package task

import (
	"context"
	"fmt"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/vm/phase"
)

// Kill signals a process, or with All every process of the container.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Signal == 0 || r.Signal > 64 {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "signal %d", r.Signal)
	}
	switch st, _, _, _ := p.state(); st {
	case task.Status_STOPPED:
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "%s: process already finished", p.name())
	case task.Status_CREATED:
		// Nothing runs in the guest yet: the signal ends the process
		// before it started, as runc's kill of a created container does.
		s.exited(c, p, 128+r.Signal)
		return empty, nil
	}
	sb, err := s.currentSandbox()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	sigkill := r.Signal == uint32(syscall.SIGKILL)
	if sigkill && p.escalating.CompareAndSwap(false, true) {
		go s.escalate(sb, p)
	}
	actx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	_, err = sb.vm.Agent.SignalProcess(actx, &api.SignalProcessRequest{
		ContainerId: r.ID, ExecId: r.ExecID, Signal: r.Signal, All: r.All && r.ExecID == "",
	})
	if err != nil {
		if sigkill && vmEnding(sb) && s.waitExit(ctx, p) {
			return empty, nil // killed with the VM, as asked
		}
		if st, _, _, _ := p.state(); st == task.Status_STOPPED {
			return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "%s: process already finished", p.name())
		}
		return nil, errgrpc.ToGRPC(fmt.Errorf("signal %s: %w", p.name(), errgrpc.ToNative(err)))
	}
	return empty, nil
}

// killGrace is how long the guest has to report a process's exit after
// SIGKILL, which no process can refuse: the kernel's teardown and the
// agent's output drain (2 s of silence at most) take far less even under
// emulation. A guest that acknowledges the kill and never reports the
// exit, or does not answer at all, is broken or hostile: its VM is killed
// and every process in it reported killed (watchVM), so no task outlives
// a SIGKILL, and nothing in the guest can hold the host's resources.
const killGrace = 10 * time.Second

// escalate kills the VM unless p's exit is reported within the kill
// grace.
func (s *service) escalate(sb *sandbox, p *process) {
	t := time.NewTimer(s.killGrace)
	defer t.Stop()
	select {
	case <-p.reported:
		return
	case <-sb.vm.Done():
		return
	case <-t.C:
	}
	log.G(s.ctx).Errorf("the guest did not report the exit of %s within %s of SIGKILL; killing the VM", p.name(), s.killGrace)
	sb.vm.Kill()
}

// waitExit waits for p's exit to be recorded, which watchVM does at once
// once the VM ended; it gives up after the kill grace or when ctx ends.
func (s *service) waitExit(ctx context.Context, p *process) bool {
	ctx, cancel := context.WithTimeout(ctx, s.killGrace)
	defer cancel()
	return p.wait(ctx) == nil
}

// Delete removes an exited exec, or the container once its init process
// has exited: the agent unmounts its root and the VM ends.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if st, _, _, _ := p.state(); st == task.Status_RUNNING || st == task.Status_PAUSED {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "cannot delete %s: it is %s", p.name(), st)
	}
	// A process that never started ends here, so no Wait hangs on it.
	p.setExited(128+uint32(syscall.SIGKILL), time.Now())
	p.stdioCopier().close()
	_, pid, status, at := p.state()
	resp := &taskAPI.DeleteResponse{Pid: pid, ExitStatus: status, ExitedAt: timestamp(at)}
	if r.ExecID != "" {
		c.removeExec(r.ExecID)
		return resp, nil
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	ctx = phase.With(ctx, phase.For(r.ID))
	phase.From(ctx).Begin(ctx, phase.Teardown)
	defer phase.Finish(ctx, r.ID, nil)
	clean := s.deleteInGuest(ctx, c)
	c.endWatch()
	sb, _ := s.currentSandbox()
	if sb != nil && sb.bundle != c.bundle {
		cleanupState(ctx, c.bundle) // a pod member's host mounts
	}
	for _, e := range c.all() {
		e.stdioCopier().close()
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	last := len(s.containers) == 0
	s.mu.Unlock()
	switch {
	case last:
		s.stopSandbox(ctx, clean)
	case sb != nil && sb.bundle == c.bundle && sb.pod != nil:
		sb.releaseSandboxContainer(ctx)
	}
	s.settleExecs(c)
	if c.hooks != nil {
		if err := runHooks(ctx, "poststop", c.hooks.Poststop, ociState(c, specs.StateStopped, 0)); err != nil {
			log.G(ctx).WithError(err).Warn("poststop hook")
		}
	}
	s.publish(ctx, runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: c.id, Pid: pid, ExitStatus: status, ExitedAt: timestamp(at),
	})
	return resp, nil
}

// settleExecs reports killed the execs of a deleted container whose exit
// the guest has not reported: it killed them with the container, or the
// VM is gone. No Wait on them outlives the container.
func (s *service) settleExecs(c *container) {
	for _, e := range c.all() {
		select {
		case <-e.reported:
			continue // reap records the guest's word
		default:
		}
		if st, _, _, _ := e.state(); st != task.Status_CREATED {
			s.exited(c, e, 128+uint32(syscall.SIGKILL))
		}
	}
}

// deleteInGuest has the agent kill what is left of the container and
// unmount its root, so the writable layer is clean before the VM ends. It
// says whether the agent did.
func (s *service) deleteInGuest(ctx context.Context, c *container) bool {
	sb, err := s.currentSandbox()
	if err != nil || !sb.alive() {
		return false
	}
	// As long as a kill may take: the VM's stop that follows for a lone
	// container syncs and unmounts again, within its own bound.
	actx, cancel := context.WithTimeout(ctx, s.killGrace)
	defer cancel()
	if _, err := sb.vm.Agent.DeleteContainer(actx, &api.DeleteContainerRequest{Id: c.id}); err != nil {
		log.G(ctx).WithError(err).Warnf("delete container %s in the VM", c.id)
		return false
	}
	return true
}

// CloseIO closes a process's stdin once what containerd wrote to it was
// sent.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.stdioCopier().finishStdin()
	}
	return empty, nil
}

// ResizePty resizes a process's terminal.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.requireStatus("resize", task.Status_RUNNING, task.Status_PAUSED); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	sb, err := s.currentSandbox()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	actx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	_, err = sb.vm.Agent.ResizePty(actx, &api.ResizePtyRequest{
		ContainerId: r.ID, ExecId: r.ExecID, Width: r.Width, Height: r.Height,
	})
	if err != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("resize the terminal of %s: %w", p.name(), errgrpc.ToNative(err)))
	}
	return empty, nil
}
