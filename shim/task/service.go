// Package task is containerd-shim-msb-v1's task API: containerd's task
// service (v3, over ttrpc) served by one shim per sandbox, whose containers
// run in that sandbox's microVM. Every call that touches a process goes to
// msb-agent in the guest; what the agent answers is checked before it
// reaches containerd.
package task

import (
	"context"
	"os"
	"sync"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/shim/sandbox"
)

var (
	_     = shim.TTRPCService(&service{})
	empty = &ptypes.Empty{}
)

// service is the task API of one sandbox: its VM and the containers in it.
type service struct {
	ctx       context.Context
	publisher shim.Publisher
	shutdown  shutdown.Service
	events    chan func()
	// killGrace is the guest's time to report an exit after SIGKILL
	// (the constant, but for tests).
	killGrace time.Duration
	// newSandbox makes the sandbox the first container boots (a fake in
	// tests).
	newSandbox func() sandbox.Sandbox

	// lifecycle serializes Create and Delete: they boot, join, leave and
	// stop the sandbox.
	lifecycle sync.Mutex

	mu sync.Mutex
	// sb is the shim's sandbox once booted; pod is its CRI pod sandbox
	// id ("" for a lone container), and byAPI says the sandbox API booted
	// it and owns its life.
	sb         sandbox.Sandbox
	pod        string
	byAPI      bool
	containers map[string]*container
}

// listenerFD is where the shim manager hands the server its ttrpc socket
// (pkg/shim serves on fd 3). It is inherited without close-on-exec.
const listenerFD = 3

func newService(ctx context.Context, pub shim.Publisher, sd shutdown.Service) *service {
	// pkg/shim serves on a duplicate of it; without close-on-exec the VMM
	// and virtiofsd would inherit the listening socket, which would then
	// keep accepting connections for a shim that was killed.
	unix.CloseOnExec(listenerFD)
	s := &service{
		ctx:        ctx,
		publisher:  pub,
		shutdown:   sd,
		events:     make(chan func(), 128),
		killGrace:  killGrace,
		newSandbox: func() sandbox.Sandbox { return sandbox.New() },
		containers: map[string]*container{},
	}
	go s.forward()
	sd.RegisterCallback(func(context.Context) error {
		s.stopSandbox(context.WithoutCancel(ctx))
		close(s.events)
		return nil
	})
	return s
}

func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

func (s *service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "container %s", id)
	}
	return c, nil
}

func (s *service) process(id, execID string) (*container, *process, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, errgrpc.ToGRPC(err)
	}
	return c, p, nil
}

// sandbox is the shim's booted sandbox.
func (s *service) sandbox() (sandbox.Sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb == nil {
		return nil, errdefs.ErrFailedPrecondition.WithMessage(sandbox.ErrNotBooted.Error())
	}
	return s.sb, nil
}

func (s *service) vmmPid() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb == nil {
		return 0
	}
	return s.sb.Pid()
}

// stopSandbox stops the shim's VM, if any.
func (s *service) stopSandbox(ctx context.Context) {
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb != nil {
		if err := sb.Stop(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("stop the sandbox")
		}
	}
}

// State reports a process as containerd sees it.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, pid, status, at := p.snapshot()
	id := r.ID
	if r.ExecID != "" {
		id = r.ExecID
	}
	return &taskAPI.StateResponse{
		ID:         id,
		Bundle:     c.bundle,
		Pid:        pid,
		Status:     st,
		Stdin:      p.stdio.stdin,
		Stdout:     p.stdio.stdout,
		Stderr:     p.stdio.stderr,
		Terminal:   p.stdio.terminal,
		ExitStatus: status,
		ExitedAt:   timestamp(at),
		ExecID:     r.ExecID,
	}, nil
}

// Wait returns once the process has exited.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.wait(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	_, _, status, at := p.snapshot()
	return &taskAPI.WaitResponse{ExitStatus: status, ExitedAt: timestamp(at)}, nil
}

// Connect tells containerd the shim's pid and the VMM's (the task's host
// process).
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.vmmPid()}, nil
}

// Shutdown ends the shim once no container is left in it and, when the
// sandbox API booted its VM, once that sandbox was shut down.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	busy := len(s.containers) > 0 || s.byAPI
	s.mu.Unlock()
	if busy {
		return empty, nil
	}
	s.shutdown.Shutdown()
	return empty, nil
}

// Checkpoint is not possible for a VM's processes.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "msb cannot checkpoint a container")
}
