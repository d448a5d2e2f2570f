package task

import (
	"context"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/vm/phase"
)

// Delete removes an exited exec, or the container once its init process
// has exited: the agent unmounts its root, its host side is undone, and
// the last container's Delete stops the VM (unless the sandbox API owns
// it).
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Delete(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	_, pid, status, at := p.snapshot()
	resp := &taskAPI.DeleteResponse{Pid: pid, ExitStatus: status, ExitedAt: timestamp(at)}
	if r.ExecID != "" {
		c.removeExec(r.ExecID)
		return resp, nil
	}
	ctx = phase.With(ctx, phase.For(r.ID))
	phase.From(ctx).Begin(ctx, phase.Teardown)
	defer phase.Finish(ctx, r.ID, nil)
	s.deleteContainer(ctx, c)
	s.publish(ctx, runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: c.id, Pid: pid, ExitStatus: status, ExitedAt: timestamp(at),
	})
	return resp, nil
}

// deleteContainer has the container leave the sandbox (the agent kills
// what is left and unmounts its root, the host side is undone), then
// stops the VM when it was the last.
func (s *service) deleteContainer(ctx context.Context, c *container) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	sb := c.init.sb
	// As long as a kill may take: the VM's stop that follows for a lone
	// container syncs and unmounts again, within its own bound.
	actx, cancel := context.WithTimeout(ctx, s.killGrace)
	if err := sb.Leave(actx, c.id); err != nil {
		log.G(ctx).WithError(err).Warnf("container %s leaves the sandbox", c.id)
	}
	cancel()
	c.endWatch()
	// The guest killed what still ran and closed its streams: what they
	// wrote reaches containerd's side before the FIFOs close.
	for _, e := range c.execList() {
		e.stdioCopier().wait()
		e.stdioCopier().close()
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	last := len(s.containers) == 0 && !s.byAPI
	s.mu.Unlock()
	if last {
		s.stopSandbox(ctx)
	}
	s.settleExecs(ctx, c)
	if c.hooks != nil {
		if err := runHooks(ctx, "poststop", c.hooks.Poststop, ociState(c, specs.StateStopped, 0)); err != nil {
			log.G(ctx).WithError(err).Warn("poststop hook")
		}
	}
}

// settleExecs ends the execs of a deleted container whose exit the guest
// has not reported: it killed them with the container, or the VM is gone,
// or they never started. No Wait on them outlives the container.
func (s *service) settleExecs(ctx context.Context, c *container) {
	for _, e := range c.execList() {
		select {
		case <-e.reported:
			continue // reap records the guest's word
		default:
		}
		if e.status() == task.Status_CREATED {
			e.Delete(ctx) //nolint:errcheck // a created process's Delete cannot fail
			continue
		}
		e.SetExited(128+uint32(syscall.SIGKILL), time.Now())
	}
}
