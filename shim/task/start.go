package task

import (
	"context"
	"encoding/json"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/shim/sandbox"
	"github.com/msb-runtime/msb/vm/phase"
)

// maxExitStatus is the largest status a process can report (128+signal
// included); the guest is not trusted to stay within it.
const maxExitStatus = 255

func timestamp(t time.Time) *timestamppb.Timestamp { return protobuf.ToTimestamp(t) }

// Start starts the init process or an exec in the guest.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	ctx = phase.With(ctx, startRecorder(r.ID, r.ExecID))
	phase.From(ctx).Begin(ctx, phase.ProcessStart)
	pid, err := p.Start(ctx)
	phase.From(ctx).End(err)
	if err != nil {
		log.G(ctx).WithError(err).Errorf("start %s", p.name())
		return nil, errgrpc.ToGRPC(err)
	}
	if r.ExecID == "" {
		s.publish(ctx, runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	} else {
		s.publish(ctx, runtime.TaskExecStartedEventTopic, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: pid})
	}
	go s.reap(p)
	if r.ExecID == "" && c.hooks != nil {
		// As in runc, a failing poststart hook is only a warning.
		if err := runHooks(ctx, "poststart", c.hooks.Poststart, ociState(c, specs.StateRunning, pid)); err != nil {
			log.G(ctx).WithError(err).Warn("poststart hook")
		}
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// startRecorder is where a process's start is timed: the task's recorder
// for its init, one of its own for an exec.
func startRecorder(id, execID string) *phase.Recorder {
	if execID == "" {
		return phase.For(id)
	}
	return phase.New(id + "/" + execID)
}

// reap waits for the process's exit in the guest, then for its output to
// reach containerd's side, and records the exit.
func (s *service) reap(p *process) {
	ctx := s.ctx
	resp, err := p.sb.Agent().WaitProcess(ctx, &api.ProcessRequest{ContainerId: p.cid, ExecId: p.execID})
	if err != nil {
		if p.sb.Ending() {
			return // watchVM reports it
		}
		log.G(ctx).WithError(err).Errorf("wait for %s", p.name())
		p.SetExited(maxExitStatus, time.Now())
		return
	}
	p.exitReported()
	status := resp.GetExitStatus()
	if status > maxExitStatus {
		log.G(ctx).Warnf("agent reported exit status %d for %s; using %d", status, p.name(), maxExitStatus)
		status = maxExitStatus
	}
	p.stdioCopier().wait()
	p.SetExited(status, time.Now())
}

// publishExit reports an exit to containerd; p.mu is held.
func (s *service) publishExit(c *container, p *process, status uint32, at time.Time) {
	id := c.id
	if p.execID != "" {
		id = p.execID
	}
	s.publish(s.ctx, runtime.TaskExitEventTopic, &eventstypes.TaskExit{
		ContainerID: c.id, ID: id, Pid: p.pid, ExitStatus: status, ExitedAt: timestamp(at),
	})
}

// watchVM turns the end of the VM into the exit of every process still in
// it: killed, as if by SIGKILL. A pod's sandbox stopped by the sandbox API
// ends this way too; a VM the last container's Delete stopped has none.
func (s *service) watchVM(sb sandbox.Sandbox) {
	<-sb.Done()
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range cs {
		for _, p := range c.all() {
			if p.status() == task.Status_CREATED {
				continue // Delete settles it
			}
			p.stdioCopier().close()
			if p.SetExited(128+uint32(syscall.SIGKILL), time.Now()) {
				n++
			}
		}
	}
	if n > 0 {
		log.G(s.ctx).WithError(sb.Err()).Warnf("the VM ended; its %d processes are reported killed", n)
	}
}

// Exec registers a process to run in the container; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if st := c.init.status(); st != task.Status_RUNNING {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "exec in %s: its init process is %s", c.id, st)
	}
	if err := api.ValidID(r.ExecID); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec id: %v", err)
	}
	var spec specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &spec); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "exec process spec: %v", err)
	}
	if err := oci.Process(&spec); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	p := s.newProcess(c.init.sb, c, r.ExecID, &spec, stdio{r.Stdin, r.Stdout, r.Stderr, r.Terminal})
	if err := c.addExec(p); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	s.publish(ctx, runtime.TaskExecAddedEventTopic, &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return empty, nil
}
