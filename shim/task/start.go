package task

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/msb-runtime/msb/vm/phase"
)

// agentTimeout bounds one control call to the agent.
const agentTimeout = 30 * time.Second

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
	if err := p.requireStatus("start", task.Status_CREATED); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	sb, err := s.currentSandbox()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ctx = phase.With(ctx, startRecorder(r.ID, r.ExecID))
	phase.From(ctx).Begin(ctx, phase.ProcessStart)
	guestPid, err := startInGuest(ctx, sb, p)
	phase.From(ctx).End(err)
	if err != nil {
		log.G(ctx).WithError(err).Errorf("start %s/%s", r.ID, r.ExecID)
		return nil, errgrpc.ToGRPC(err)
	}
	pid := guestPid
	if r.ExecID == "" {
		// The task's pid is a host pid: the VMM's.
		pid = uint32(sb.vm.Pid())
		s.publish(ctx, runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	} else {
		s.publish(ctx, runtime.TaskExecStartedEventTopic, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: pid})
	}
	p.started(pid)
	go s.reap(sb, c, p)
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

// startInGuest opens the process's stdio streams, then starts it.
func startInGuest(ctx context.Context, sb *sandbox, p *process) (uint32, error) {
	spec, err := json.Marshal(p.spec)
	if err != nil {
		return 0, fmt.Errorf("encode process: %w", err)
	}
	pio, err := openIO(ctx, sb.vm.Agent, p.cid, p.execID, p.stdio)
	if err != nil {
		return 0, fmt.Errorf("open stdio: %w", err)
	}
	in, out, errOut := p.stdio.flags()
	actx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	resp, err := sb.vm.Agent.StartProcess(actx, &api.StartProcessRequest{
		ContainerId: p.cid, ExecId: p.execID, Process: spec, Stdin: in, Stdout: out, Stderr: errOut,
	})
	if err != nil {
		pio.close()
		return 0, fmt.Errorf("start %s in the VM: %w", p.name(), errgrpc.ToNative(err))
	}
	p.setIO(pio)
	return resp.GetPid(), nil
}

// reap waits for the process's exit in the guest, then for its output,
// and reports the exit.
func (s *service) reap(sb *sandbox, c *container, p *process) {
	ctx := s.ctx
	resp, err := sb.vm.Agent.WaitProcess(ctx, &api.ProcessRequest{ContainerId: p.cid, ExecId: p.execID})
	if err != nil {
		if vmEnding(sb) {
			return // watchVM reports it
		}
		log.G(ctx).WithError(err).Errorf("wait for %s", p.name())
		s.exited(c, p, maxExitStatus)
		return
	}
	p.exitReported()
	status := resp.GetExitStatus()
	if status > maxExitStatus {
		log.G(ctx).Warnf("agent reported exit status %d for %s; using %d", status, p.name(), maxExitStatus)
		status = maxExitStatus
	}
	p.stdioCopier().wait()
	s.exited(c, p, status)
}

// exited records an exit once and publishes it.
func (s *service) exited(c *container, p *process, status uint32) {
	at := time.Now()
	if !p.setExited(status, at) {
		return
	}
	id := c.id
	if p.execID != "" {
		id = p.execID
	}
	_, pid, _, _ := p.state()
	s.publish(s.ctx, runtime.TaskExitEventTopic, &eventstypes.TaskExit{
		ContainerID: c.id, ID: id, Pid: pid, ExitStatus: status, ExitedAt: timestamp(at),
	})
}

// vmEnding says whether the VM ended or is ending: its channel ends
// first when the host gives up on the guest (vm.VM then kills the VMM).
func vmEnding(sb *sandbox) bool {
	select {
	case <-sb.vm.Done():
		return true
	case <-sb.vm.Agent.Done():
		return true
	default:
		return sb.stopping.Load()
	}
}

// watchVM turns an unexpected end of the VM into the exit of every
// process in it: killed, as if by SIGKILL.
func (s *service) watchVM(sb *sandbox) {
	<-sb.vm.Done()
	if sb.stopping.Load() {
		return
	}
	log.G(s.ctx).WithError(sb.vm.Err()).Error("the VM ended unexpectedly; its processes are reported killed")
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		for _, p := range c.all() {
			if st, _, _, _ := p.state(); st == task.Status_CREATED {
				continue // Delete settles it
			}
			p.stdioCopier().close()
			s.exited(c, p, 128+uint32(syscall.SIGKILL))
		}
	}
}

// Exec registers a process to run in the container; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.init.requireStatus("exec", task.Status_RUNNING); err != nil {
		return nil, errgrpc.ToGRPC(err)
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
	p := newProcess(c.id, r.ExecID, &spec, stdio{r.Stdin, r.Stdout, r.Stderr, r.Terminal})
	if err := c.addExec(p); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	s.publish(ctx, runtime.TaskExecAddedEventTopic, &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return empty, nil
}
