// Package sandboxapi is containerd's sandbox service
// (containerd.runtime.sandbox.v1) on the shim: with `sandboxer = 'shim'`
// CRI calls it instead of running a pause container. The sandbox is the
// VM: CreateSandbox prepares it, StartSandbox boots it, and the pod's
// containers then join it through the task service on the same
// connection. Only when the pod shares one PID namespace does a process
// hold it in the guest (agent/pause).
package sandboxapi

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"sync"
	"syscall"
	"time"

	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
	"github.com/msb-runtime/msb/shim/task"
)

// CRI's names for a sandbox's states.
const (
	stateReady    = "SANDBOX_READY"
	stateNotReady = "SANDBOX_NOTREADY"
)

// pingTimeout bounds PingSandbox's question to the agent.
const pingTimeout = 5 * time.Second

// Service is the sandbox service of one shim: at most one sandbox.
type Service struct {
	ctx      context.Context
	tasks    task.Service
	shutdown shutdown.Service
	// newSandbox makes the VM and inGuest the pod in it (fakes in tests).
	newSandbox func() sandbox.Sandbox
	inGuest    func(ctx context.Context, p *pod, sb sandbox.Sandbox) error
	// shutdownDelay is the constant but in tests.
	shutdownDelay time.Duration

	// lifecycle serializes the calls that change the sandbox.
	lifecycle sync.Mutex

	mu        sync.Mutex
	id        string
	pod       *pod
	sb        sandbox.Sandbox
	createdAt time.Time
	stopping  bool
	// exited is closed once the sandbox ended: stopped, its VM gone, or
	// shut down before it started.
	exited     chan struct{}
	exitStatus uint32
	exitedAt   time.Time
}

var _ sandboxAPI.TTRPCSandboxService = (*Service)(nil)

// New returns the sandbox service, which hands the VM it boots to tasks.
func New(ctx context.Context, tasks task.Service, sd shutdown.Service) *Service {
	return &Service{
		ctx: ctx, tasks: tasks, shutdown: sd, shutdownDelay: shutdownDelay,
		newSandbox: func() sandbox.Sandbox { return sandbox.New() },
		inGuest:    func(ctx context.Context, p *pod, sb sandbox.Sandbox) error { return p.createInGuest(ctx, sb.Agent()) },
	}
}

// RegisterTTRPC serves the sandbox API.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	sandboxAPI.RegisterTTRPCSandboxService(server, s)
	return nil
}

// sandbox checks that id is the shim's sandbox.
func (s *Service) sandbox(id string) error {
	if s.id == "" || id != s.id {
		return fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return nil
}

// running returns the sandbox id names while its VM runs; otherwise the
// error is of kind notRunning.
func (s *Service) running(id string, notRunning error) (sandbox.Sandbox, error) {
	s.mu.Lock()
	err := s.sandbox(id)
	sb := s.sb
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if sb == nil || sb.Ending() {
		return nil, fmt.Errorf("sandbox %s: its VM does not run: %w", id, notRunning)
	}
	return sb, nil
}

// CreateSandbox prepares the VM: its size from the pod's resources and
// the runtime options, its network namespace from the request. Nothing
// runs yet; bad input fails here.
func (s *Service) CreateSandbox(ctx context.Context, r *sandboxAPI.CreateSandboxRequest) (*sandboxAPI.CreateSandboxResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	exists := s.id != ""
	s.mu.Unlock()
	if exists {
		return nil, errgrpc.ToGRPCf(errdefs.ErrAlreadyExists, "sandbox %s", r.GetSandboxID())
	}
	p, err := newPod(ctx, r)
	if err != nil {
		log.G(ctx).WithError(err).Errorf("create sandbox %s", r.GetSandboxID())
		return nil, errgrpc.ToGRPC(err)
	}
	s.mu.Lock()
	s.id, s.pod, s.createdAt, s.exited = r.GetSandboxID(), p, time.Now(), make(chan struct{})
	s.mu.Unlock()
	return &sandboxAPI.CreateSandboxResponse{}, nil
}

// StartSandbox boots the VM and hands it to the task service; it returns
// the VMM's pid and when the sandbox was created.
func (s *Service) StartSandbox(ctx context.Context, r *sandboxAPI.StartSandboxRequest) (*sandboxAPI.StartSandboxResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	id, p, started, created := s.id, s.pod, s.sb != nil || s.stopping, s.createdAt
	s.mu.Unlock()
	switch {
	case id == "":
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "start sandbox %s: it was not created", r.GetSandboxID())
	case id != r.GetSandboxID():
		return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "sandbox %s", r.GetSandboxID())
	case started:
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "start sandbox %s: it was started already", id)
	}
	sb, err := s.boot(ctx, p)
	if err != nil {
		log.G(ctx).WithError(err).Errorf("start sandbox %s", id)
		return nil, errgrpc.ToGRPC(err)
	}
	s.mu.Lock()
	s.sb = sb
	s.mu.Unlock()
	go s.watch(sb)
	return &sandboxAPI.StartSandboxResponse{Pid: sb.Pid(), CreatedAt: protobuf.ToTimestamp(created)}, nil
}

// boot starts the VM, makes the pod in the guest and hands the VM to the
// task service; on error the VM is stopped.
func (s *Service) boot(ctx context.Context, p *pod) (_ sandbox.Sandbox, retErr error) {
	sb := s.newSandbox()
	if err := sb.Boot(ctx, p.boot); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			sb.Stop(context.WithoutCancel(ctx)) //nolint:errcheck // logged by Stop; the boot's error is the one
		}
	}()
	if err := s.inGuest(ctx, p, sb); err != nil {
		return nil, err
	}
	if err := s.tasks.Adopt(p.id, sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// watch records the sandbox's end: 0 when it was stopped, killed when
// its VM ended by itself.
func (s *Service) watch(sb sandbox.Sandbox) {
	<-sb.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	status := uint32(0)
	if !s.stopping {
		status = 128 + uint32(syscall.SIGKILL)
		log.G(s.ctx).WithError(sb.Err()).Warnf("the VM of sandbox %s ended", s.id)
	}
	s.exit(status)
}

// exit records the end once; s.mu is held.
func (s *Service) exit(status uint32) {
	select {
	case <-s.exited:
	default:
		s.exitStatus, s.exitedAt = status, time.Now()
		close(s.exited)
	}
}

// Platform is what the VM runs: the host's architecture.
func (s *Service) Platform(ctx context.Context, r *sandboxAPI.PlatformRequest) (*sandboxAPI.PlatformResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sandbox(r.GetSandboxID()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &sandboxAPI.PlatformResponse{Platform: &types.Platform{OS: "linux", Architecture: goruntime.GOARCH}}, nil
}

// StopSandbox stops every container of the sandbox (their processes are
// reported killed) and the VM, and undoes what it holds on the host; the
// containers stay until they are deleted. A second Stop does nothing.
func (s *Service) StopSandbox(ctx context.Context, r *sandboxAPI.StopSandboxRequest) (*sandboxAPI.StopSandboxResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	if err := s.sandbox(r.GetSandboxID()); err != nil {
		s.mu.Unlock()
		return nil, errgrpc.ToGRPC(err)
	}
	sb, again := s.sb, s.stopping
	s.stopping = true
	if sb == nil {
		s.exit(0)
	}
	exited := s.exited
	s.mu.Unlock()
	if sb != nil && !again {
		if err := sb.Stop(ctx); err != nil {
			log.G(ctx).WithError(err).Warnf("stop sandbox %s", r.GetSandboxID())
		}
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return nil, errgrpc.ToGRPC(ctx.Err())
	}
	return &sandboxAPI.StopSandboxResponse{}, nil
}

// WaitSandbox returns once the sandbox ended, with its exit.
func (s *Service) WaitSandbox(ctx context.Context, r *sandboxAPI.WaitSandboxRequest) (*sandboxAPI.WaitSandboxResponse, error) {
	s.mu.Lock()
	err := s.sandbox(r.GetSandboxID())
	exited := s.exited
	s.mu.Unlock()
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return nil, errgrpc.ToGRPC(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &sandboxAPI.WaitSandboxResponse{ExitStatus: s.exitStatus, ExitedAt: protobuf.ToTimestamp(s.exitedAt)}, nil
}

// SandboxStatus says whether the sandbox is ready (its VM runs), with the
// VMM's pid, when it was created and ended, and its network namespace.
func (s *Service) SandboxStatus(ctx context.Context, r *sandboxAPI.SandboxStatusRequest) (*sandboxAPI.SandboxStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sandbox(r.GetSandboxID()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &sandboxAPI.SandboxStatusResponse{
		SandboxID: s.id, State: stateNotReady, CreatedAt: protobuf.ToTimestamp(s.createdAt),
		Info: map[string]string{"netns": s.pod.boot.NetNS},
	}
	if s.sb != nil {
		resp.Pid = s.sb.Pid()
		resp.Info["vmm_pid"] = fmt.Sprint(s.sb.Pid())
	}
	select {
	case <-s.exited:
		resp.ExitedAt = protobuf.ToTimestamp(s.exitedAt)
	default:
		if s.sb != nil {
			resp.State = stateReady
		}
	}
	return resp, nil
}

// PingSandbox answers while the VM runs and its agent answers.
func (s *Service) PingSandbox(ctx context.Context, r *sandboxAPI.PingRequest) (*sandboxAPI.PingResponse, error) {
	sb, err := s.running(r.GetSandboxID(), errdefs.ErrUnavailable)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := sb.Agent().Ping(ctx, &api.PingRequest{}); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrUnavailable, "sandbox %s: the agent does not answer: %v", r.GetSandboxID(), err)
	}
	return &sandboxAPI.PingResponse{}, nil
}

// ShutdownSandbox stops the sandbox if it runs, releases everything it
// held, and lets the shim exit.
func (s *Service) ShutdownSandbox(ctx context.Context, r *sandboxAPI.ShutdownSandboxRequest) (*sandboxAPI.ShutdownSandboxResponse, error) {
	s.mu.Lock()
	created := s.id != ""
	s.mu.Unlock()
	// containerd shuts down a shim whose CreateSandbox failed: nothing
	// to stop then.
	if created {
		if _, err := s.StopSandbox(ctx, &sandboxAPI.StopSandboxRequest{SandboxID: r.GetSandboxID()}); err != nil {
			return nil, err
		}
	}
	s.tasks.Release()
	// New connections are refused from now on; this one stays.
	if addr := os.Getenv(sandbox.AddressEnv); addr != "" {
		if err := cshim.RemoveSocket(addr); err != nil {
			log.G(ctx).WithError(err).Warn("remove the shim's socket")
		}
	}
	// The shim exits as soon as its shutdown runs, without waiting for
	// the replies in flight, and containerd's sandbox controller takes a
	// ShutdownSandbox whose reply never came for a failure (unlike the
	// task API's Shutdown): this reply goes out first.
	time.AfterFunc(s.shutdownDelay, s.shutdown.Shutdown)
	return &sandboxAPI.ShutdownSandboxResponse{}, nil
}

// shutdownDelay is how long the shim outlives its ShutdownSandbox reply.
const shutdownDelay = time.Second

// UpdateSandbox is not supported: a VM keeps the size it booted with.
func (s *Service) UpdateSandbox(ctx context.Context, r *sandboxAPI.UpdateSandboxRequest) (*sandboxAPI.UpdateSandboxResponse, error) {
	return nil, errgrpc.ToGRPCf(errdefs.ErrNotImplemented, "a sandbox's VM keeps the size it booted with")
}
