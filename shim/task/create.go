package task

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/shim/sandbox"
	"github.com/msb-runtime/msb/vm"
	"github.com/msb-runtime/msb/vm/phase"
)

// Create boots the sandbox's VM with the container's root as its disks
// (the first container), or has the container join the running VM (a pod
// member); the init process starts with Start.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	ctx = phase.With(ctx, phase.For(r.ID))
	phase.From(ctx).Begin(ctx, phase.HostPrepare)
	c, err := s.create(ctx, r)
	phase.From(ctx).End(err)
	if err != nil {
		phase.Finish(ctx, r.ID, err)
		log.G(ctx).WithError(err).Errorf("create %s", r.ID)
		if errdefs.IsNotImplemented(err) {
			// containerd takes Unimplemented from Create for "this shim
			// speaks an older task API" and retries on that API, which
			// hides the real message.
			err = errdefs.ErrFailedPrecondition.WithMessage(err.Error())
		}
		return nil, errgrpc.ToGRPC(err)
	}
	pid := s.vmmPid()
	c.init.setPid(pid)
	s.publish(ctx, runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         pid,
	})
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
}

func (s *service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*container, error) {
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("msb cannot restore a checkpoint: %w", errdefs.ErrNotImplemented)
	}
	s.mu.Lock()
	exists, sb := s.containers[r.ID] != nil, s.sb
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	cfg, err := sandbox.LoadConfig(r.Options)
	if err != nil {
		return nil, fmt.Errorf("msb runtime options: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	spec, err := oci.Load(r.Bundle)
	if err != nil {
		return nil, err
	}
	if err := oci.Process(spec.Process); err != nil {
		return nil, err
	}
	p := podOf(spec)
	if sb != nil {
		if err := s.mayJoin(r.ID, p); err != nil {
			return nil, err
		}
	}
	m, err := prepare(ctx, cfg, r, spec, p, sb != nil)
	if err != nil {
		return nil, err
	}
	if pod, byAPI := s.podByAPI(); byAPI {
		withPodFiles(m.Guest.Spec, pod, sharesIPC(spec))
	}
	c := newContainer(r, m.Guest)
	if sb != nil {
		err = sb.Join(ctx, m)
	} else {
		sb, err = s.boot(ctx, cfg, spec, p, m, c)
	}
	if err != nil {
		return nil, err
	}
	c.init = s.newProcess(sb, c, "", m.Guest.Spec.Process, stdio{r.Stdin, r.Stdout, r.Stderr, r.Terminal})
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	s.watch(c, sb)
	return c, nil
}

// podByAPI is the pod sandbox the sandbox API booted, if it did.
func (s *service) podByAPI() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pod, s.byAPI
}

// boot starts the sandbox's VM for its first container.
func (s *service) boot(ctx context.Context, cfg sandbox.Config, spec *specs.Spec, p *pod, m *sandbox.Member, c *container) (sandbox.Sandbox, error) {
	b, err := bootSpec(cfg, spec, p, m)
	if err != nil {
		return nil, err
	}
	b.BeforeNetwork = func(ctx context.Context, pid uint32) error {
		return runCreateHooks(ctx, c, pid)
	}
	sb := s.newSandbox()
	if err := sb.Boot(ctx, b); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sb = sb
	if p != nil {
		s.pod = p.sandboxID
	}
	s.mu.Unlock()
	go s.watchVM(sb)
	return sb, nil
}

// prepare reads and translates everything the guest needs before anything
// is started: bad input fails here and leaves nothing behind. joining says
// a VM runs already: the container joins it as a pod member.
func prepare(ctx context.Context, cfg sandbox.Config, r *taskAPI.CreateTaskRequest, spec *specs.Spec, p *pod, joining bool) (*sandbox.Member, error) {
	opts := oci.GuestOptions{ContainerID: r.ID, Root: rootfs.RootPath(r.ID)}
	if p != nil {
		opts.PodSandboxID = p.sandboxID
	}
	guest, err := oci.GuestSpec(spec, opts)
	if err != nil {
		return nil, err
	}
	for _, w := range guest.Warnings {
		log.G(ctx).WithField("container", r.ID).Warn(w)
	}
	if _, err := vmSize(cfg, spec, p); err != nil {
		return nil, err
	}
	plan, err := rootfs.Prepare(ctx, r.ID, r.Rootfs, rootfs.Options{
		Disks:      diskBudget(joining, withNet(guest)),
		HostRootfs: filepath.Join(r.Bundle, "rootfs"),
	})
	if err != nil {
		return nil, err
	}
	return &sandbox.Member{ID: r.ID, Bundle: r.Bundle, Guest: guest, Plan: plan, Rootfs: r.Rootfs}, nil
}

// bootSpec is the VM the first container boots: sized from the container
// (a pod's sandbox: the pod), in a host cgroup beside the container's.
func bootSpec(cfg sandbox.Config, spec *specs.Spec, p *pod, m *sandbox.Member) (*sandbox.BootSpec, error) {
	size, err := vmSize(cfg, spec, p)
	if err != nil {
		return nil, err
	}
	host, err := sandbox.HostLimits(spec, podSized(spec, p), m.ID, size.MemoryMiB)
	if err != nil {
		return nil, err
	}
	return &sandbox.BootSpec{
		Bundle: m.Bundle, Config: cfg, Size: size, Host: host,
		Net: withNet(m.Guest), NetNS: m.Guest.NetNS, Pod: p != nil, First: m,
	}, nil
}

func vmSize(cfg sandbox.Config, spec *specs.Spec, p *pod) (oci.Size, error) {
	return oci.VMSize(podSized(spec, p), oci.Defaults{VCPUs: cfg.DefaultVCPUs, MemoryMiB: cfg.DefaultMemoryMiB})
}

// withNet says whether the VM needs a NIC for the container: it joins a
// network namespace (CRI's pod) or hooks may configure one (nerdctl's
// network hook).
func withNet(g *oci.Guest) bool {
	return g.NetNS != "" || (g.HostHooks != nil &&
		len(g.HostHooks.CreateRuntime)+len(g.HostHooks.Prestart) > 0) //nolint:staticcheck // Prestart is still run
}

// diskBudget is how many disks the container's root may use: none when
// it joins a running VM (its images reach the guest as files in the VM's
// share), else what the VM has beside its NIC and its share (kept free
// even when the VM turns out to need no share).
func diskBudget(joining, net bool) int {
	if joining {
		return 0
	}
	if net {
		return vm.MaxDisks - 2
	}
	return vm.MaxDisks - 1
}

func newContainer(r *taskAPI.CreateTaskRequest, g *oci.Guest) *container {
	return &container{
		id: r.ID, bundle: r.Bundle, annotations: g.Spec.Annotations, hooks: g.HostHooks,
		watchDone: make(chan struct{}), execs: map[string]*process{},
	}
}

// newProcess makes one of c's processes, whose exit the service reports.
func (s *service) newProcess(sb sandbox.Sandbox, c *container, execID string, spec *specs.Process, io stdio) *process {
	p := newProcess(sb, c.id, execID, spec, io)
	p.onExit = func(p *process, status uint32, at time.Time) { s.publishExit(c, p, status, at) }
	return p
}

// watch starts the container's event watchers (OOM).
func (s *service) watch(c *container, sb sandbox.Sandbox) {
	wctx, stop := context.WithCancel(s.ctx)
	c.stopWatch = stop
	go func() {
		defer close(c.watchDone)
		s.watchOOM(wctx, sb, c.id)
	}()
}
