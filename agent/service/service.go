// Package service implements api.AgentService, the ttrpc API msb-agent
// serves to the host. It stays thin: containers and processes live in the
// container and process packages; this maps calls onto them and their
// errors onto status codes.
package service

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/container"
	"github.com/msb-runtime/msb/agent/network"
	"github.com/msb-runtime/msb/agent/process"
	"github.com/msb-runtime/msb/agent/stdio"
)

// Version is the agent's version, reported by Ping.
const Version = "0.1.0"

// Config configures the service.
type Config struct {
	Container container.Config
	// StdioTimeout bounds StartProcess's wait for the declared streams.
	StdioTimeout time.Duration
	// Reboot ends the VM; Shutdown calls it shortly after replying.
	Reboot func()
	// Network configures the VM's network device; nil is the guest's own.
	Network *network.Configurer
}

// Service is the agent's API.
type Service struct {
	cfg   Config
	Stdio *stdio.Registry

	boot BootTimes

	mu         sync.Mutex
	containers map[string]*container.Container
	creating   map[string]bool
	stopping   bool
}

var _ api.AgentService = (*Service)(nil)

// New returns the service; its Stdio.Put is the api.Serve stdio handler.
func New(cfg Config) *Service {
	if cfg.StdioTimeout == 0 {
		cfg.StdioTimeout = 10 * time.Second
	}
	if cfg.Network == nil {
		cfg.Network = &network.Configurer{}
	}
	s := &Service{
		cfg:        cfg,
		Stdio:      stdio.NewRegistry(),
		containers: map[string]*container.Container{},
		creating:   map[string]bool{},
	}
	s.cfg.Container.NamespaceOf = s.namespaceOf
	return s
}

// namespaceOf opens a namespace of container id's running init, for a
// container that shares its PID namespace (a CRI pod's POD mode).
func (s *Service) namespaceOf(id, kind string) (*os.File, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	return c.OpenNamespace(kind)
}

// Ping reports the agent version and the guest kernel release.
func (s *Service) Ping(ctx context.Context, _ *api.PingRequest) (*api.PingResponse, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, toStatus(fmt.Errorf("uname: %w", err))
	}
	return &api.PingResponse{
		AgentVersion: Version, KernelRelease: unix.ByteSliceToString(u.Release[:]),
		InitExecNs: ns(s.boot.InitExec), AgentMainNs: ns(s.boot.Main), ServingNs: ns(s.boot.Serving),
		NowNs: ns(BootClock()),
	}, nil
}

// BootTimes are the guest's boot as its clock (CLOCK_BOOTTIME) saw it:
// the kernel started /init, the agent's main began, the agent began
// serving. Ping reports them for the host's phase timing.
type BootTimes struct {
	InitExec, Main, Serving time.Duration
}

// SetBootTimes records the boot's times; call it before serving.
func (s *Service) SetBootTimes(b BootTimes) { s.boot = b }

func ns(d time.Duration) uint64 { return uint64(max(d, 0)) }

// BootClock reads CLOCK_BOOTTIME, the guest's time since its kernel's
// clock started.
func BootClock() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// CreateContainer mounts the root and prepares the container.
func (s *Service) CreateContainer(ctx context.Context, r *api.CreateContainerRequest) (*api.Empty, error) {
	id := r.GetId()
	if err := s.reserve(id); err != nil {
		return nil, toStatus(err)
	}
	c, err := container.Create(ctx, s.cfg.Container, id, r.GetRootfs(), r.GetSpec())
	s.mu.Lock()
	delete(s.creating, id)
	stopping := s.stopping
	if err == nil && !stopping {
		s.containers[id] = c
	}
	s.mu.Unlock()
	if err == nil && stopping { // Shutdown ran meanwhile and did not see it
		c.Destroy(ctx) //nolint:errcheck // logged by Destroy
		err = fmt.Errorf("agent is shutting down: %w", errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		log.G(ctx).WithError(err).Errorf("create container %s", id)
		return nil, toStatus(fmt.Errorf("create container %s: %w", id, err))
	}
	return &api.Empty{}, nil
}

func (s *Service) reserve(id string) error {
	if err := api.ValidID(id); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopping:
		return fmt.Errorf("agent is shutting down: %w", errdefs.ErrFailedPrecondition)
	case s.containers[id] != nil || s.creating[id]:
		return fmt.Errorf("container %s: %w", id, errdefs.ErrAlreadyExists)
	}
	s.creating[id] = true
	return nil
}

func (s *Service) container(id string) (*container.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// DeleteContainer kills what is left of a container and unmounts it.
func (s *Service) DeleteContainer(ctx context.Context, r *api.DeleteContainerRequest) (*api.Empty, error) {
	s.mu.Lock()
	c := s.containers[r.GetId()]
	delete(s.containers, r.GetId())
	s.mu.Unlock()
	if c == nil {
		return nil, toStatus(fmt.Errorf("container %q: %w", r.GetId(), errdefs.ErrNotFound))
	}
	err := c.Destroy(ctx)
	s.Stdio.DropContainer(c.ID)
	if err != nil {
		return nil, toStatus(fmt.Errorf("delete container %s: %w", c.ID, err))
	}
	return &api.Empty{}, nil
}

// StartProcess starts the init process or an exec once its declared
// streams have arrived.
func (s *Service) StartProcess(ctx context.Context, r *api.StartProcessRequest) (*api.StartProcessResponse, error) {
	pid, err := s.startProcess(ctx, r)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("start process %s/%s", r.GetContainerId(), r.GetExecId())
		return nil, toStatus(err)
	}
	return &api.StartProcessResponse{Pid: uint32(pid)}, nil
}

func (s *Service) startProcess(ctx context.Context, r *api.StartProcessRequest) (int, error) {
	spec, err := parseProcess(r.GetProcess(), r.GetExecId())
	if err != nil {
		return 0, err
	}
	c, err := s.container(r.GetContainerId())
	if err != nil {
		return 0, err
	}
	p, err := c.AddProcess(r.GetExecId())
	if err != nil {
		return 0, err
	}
	streams, err := s.Stdio.Take(ctx, c.ID, r.GetExecId(), declared(r), s.cfg.StdioTimeout)
	if err != nil {
		c.Forget(p)
		return 0, err
	}
	if err := c.StartProcess(p, spec, streams); err != nil {
		return 0, err
	}
	return p.Pid(), nil
}

func parseProcess(b []byte, execID string) (*specs.Process, error) {
	if execID != "" {
		if err := api.ValidID(execID); err != nil {
			return nil, fmt.Errorf("exec id: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("process spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("process spec has no args: %w", errdefs.ErrInvalidArgument)
	}
	if p.Cwd != "" && !strings.HasPrefix(p.Cwd, "/") {
		return nil, fmt.Errorf("process cwd %q is not absolute: %w", p.Cwd, errdefs.ErrInvalidArgument)
	}
	return &p, nil
}

func declared(r *api.StartProcessRequest) []int {
	var fds []int
	for fd, ok := range []bool{r.GetStdin(), r.GetStdout(), r.GetStderr()} {
		if ok {
			fds = append(fds, fd)
		}
	}
	return fds
}

func (s *Service) process(containerID, execID string) (*process.Process, error) {
	c, err := s.container(containerID)
	if err != nil {
		return nil, err
	}
	return c.Process(execID)
}

// WaitProcess returns once the process has exited and its output drained.
func (s *Service) WaitProcess(ctx context.Context, r *api.ProcessRequest) (*api.WaitProcessResponse, error) {
	p, err := s.process(r.GetContainerId(), r.GetExecId())
	if err != nil {
		return nil, toStatus(err)
	}
	e, err := p.Wait(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.WaitProcessResponse{ExitStatus: e.Status, ExitedAtUnixNano: e.At.UnixNano()}, nil
}

// DeleteProcess forgets an exec that has exited.
func (s *Service) DeleteProcess(ctx context.Context, r *api.ProcessRequest) (*api.Empty, error) {
	c, err := s.container(r.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.DeleteProcess(r.GetExecId()); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

// SignalProcess signals one process, or with all every process of the
// container.
func (s *Service) SignalProcess(ctx context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
	sig := syscall.Signal(r.GetSignal())
	if sig <= 0 || sig > 64 {
		return nil, toStatus(fmt.Errorf("signal %d: %w", r.GetSignal(), errdefs.ErrInvalidArgument))
	}
	c, err := s.container(r.GetContainerId())
	if err != nil {
		return nil, toStatus(err)
	}
	if r.GetAll() {
		if err := c.SignalAll(sig); err != nil {
			return nil, toStatus(err)
		}
		return &api.Empty{}, nil
	}
	p, err := c.Process(r.GetExecId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := p.Signal(sig); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *api.ResizePtyRequest) (*api.Empty, error) {
	p, err := s.process(r.GetContainerId(), r.GetExecId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := p.Resize(r.GetWidth(), r.GetHeight()); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

// CloseStdin closes a process's stdin once what was sent is delivered.
func (s *Service) CloseStdin(ctx context.Context, r *api.ProcessRequest) (*api.Empty, error) {
	p, err := s.process(r.GetContainerId(), r.GetExecId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := p.CloseStdin(); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

// Shutdown deletes every container, syncs, replies and then ends the VM.
func (s *Service) Shutdown(ctx context.Context, _ *api.Empty) (*api.Empty, error) {
	s.mu.Lock()
	s.stopping = true
	cs := s.containers
	s.containers = map[string]*container.Container{}
	s.mu.Unlock()
	for _, c := range cs {
		if err := c.Destroy(ctx); err != nil {
			log.G(ctx).WithError(err).Warnf("shutdown: container %s", c.ID)
		}
		s.Stdio.DropContainer(c.ID)
	}
	unix.Sync()
	log.G(ctx).Info("shutdown: ending the VM")
	if s.cfg.Reboot != nil {
		time.AfterFunc(50*time.Millisecond, s.cfg.Reboot)
	}
	return &api.Empty{}, nil
}
