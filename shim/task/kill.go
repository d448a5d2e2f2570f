package task

import (
	"context"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
)

// Kill signals a process, or with All every process of the container.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Signal == 0 || r.Signal > 64 {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "signal %d", r.Signal)
	}
	sigkill := r.Signal == uint32(syscall.SIGKILL)
	if st := p.status(); sigkill && (st == task.Status_RUNNING || st == task.Status_PAUSED) &&
		p.escalating.CompareAndSwap(false, true) {
		go s.escalate(p)
	}
	err = p.Kill(ctx, r.Signal, r.All)
	if err == nil {
		return empty, nil
	}
	if sigkill && p.sb.Ending() && s.waitExit(ctx, p) {
		return empty, nil // killed with the VM, as asked
	}
	if !errdefs.IsNotFound(err) && p.status() == task.Status_STOPPED {
		err = finished(p)
	}
	return nil, errgrpc.ToGRPC(err)
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
func (s *service) escalate(p *process) {
	t := time.NewTimer(s.killGrace)
	defer t.Stop()
	select {
	case <-p.reported:
		return
	case <-p.sb.Done():
		return
	case <-t.C:
	}
	log.G(s.ctx).Errorf("the guest did not report the exit of %s within %s of SIGKILL; killing the VM", p.name(), s.killGrace)
	p.sb.Kill()
}

// waitExit waits for p's exit to be recorded, which watchVM does at once
// once the VM ended; it gives up after the kill grace or when ctx ends.
func (s *service) waitExit(ctx context.Context, p *process) bool {
	ctx, cancel := context.WithTimeout(ctx, s.killGrace)
	defer cancel()
	return p.wait(ctx) == nil
}

// CloseIO ends a process's stdin once what its clients wrote was sent and
// they closed the FIFO. Only CloseIO does: a client that closes the FIFO
// without it detaches.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.closeStdin()
	}
	return empty, nil
}

// ResizePty resizes a process's terminal.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Resize(ctx, r.Width, r.Height); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return empty, nil
}
