package task

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/vm"
	"github.com/msb-runtime/msb/vm/phase"
)

// Create boots the sandbox's VM with the container's root as its disks and
// has the agent mount that root; the init process starts with Start.
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

// createRequest is what create needs of containerd's request.
type createRequest struct {
	id, bundle string
}

func (s *service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*container, error) {
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("msb cannot restore a checkpoint: %w", errdefs.ErrNotImplemented)
	}
	s.mu.Lock()
	exists, sb := s.containers[r.ID] != nil, s.sandbox
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	cfg, err := loadConfig(r.Options)
	if err != nil {
		return nil, fmt.Errorf("msb runtime options: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	boot, err := prepare(ctx, cfg, r, sb != nil)
	if err != nil {
		return nil, err
	}
	req := createRequest{id: r.ID, bundle: r.Bundle}
	if sb != nil {
		if err := s.joinPod(ctx, sb, req, boot); err != nil {
			return nil, err
		}
	} else if sb, err = s.boot(ctx, cfg, boot); err != nil {
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(s.ctx)
	c := &container{
		id:          r.ID,
		bundle:      r.Bundle,
		annotations: boot.guest.Spec.Annotations,
		hooks:       boot.guest.HostHooks,
		init:        newProcess(r.ID, "", boot.guest.Spec.Process, stdio{r.Stdin, r.Stdout, r.Stderr, r.Terminal}),
		stopWatch:   stopWatch,
		watchDone:   make(chan struct{}),
		execs:       map[string]*process{},
	}
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	go func() {
		defer close(c.watchDone)
		s.watchOOM(wctx, sb, r.ID)
	}()
	return c, nil
}

// boot starts the sandbox's VM for its first container, which the agent
// then creates.
func (s *service) boot(ctx context.Context, cfg Config, b *bootSpec) (*sandbox, error) {
	sb, err := startSandbox(ctx, cfg, b)
	if err != nil {
		return nil, err
	}
	phase.From(ctx).Begin(ctx, phase.GuestMounts)
	c := &container{id: b.id, bundle: b.bundle, annotations: b.guest.Spec.Annotations, hooks: b.guest.HostHooks}
	if err := connectNetwork(ctx, sb, c, b); err != nil {
		sb.cleanup(ctx)
		return nil, err
	}
	if err := createInGuest(ctx, sb, b.id, b); err != nil {
		sb.cleanup(ctx)
		return nil, err
	}
	s.mu.Lock()
	s.sandbox = sb
	s.mu.Unlock()
	go s.watchVM(sb)
	return sb, nil
}

// prepare reads and translates everything the VM needs before anything is
// started: bad input fails here and leaves nothing behind. joining says a
// VM runs already: the container joins it as a pod member.
func prepare(ctx context.Context, cfg Config, r *taskAPI.CreateTaskRequest, joining bool) (*bootSpec, error) {
	spec, err := oci.Load(r.Bundle)
	if err != nil {
		return nil, err
	}
	if err := oci.Process(spec.Process); err != nil {
		return nil, err
	}
	p := podOf(spec)
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
	size, err := oci.VMSize(podSized(spec, p), oci.Defaults{VCPUs: cfg.DefaultVCPUs, MemoryMiB: cfg.DefaultMemoryMiB})
	if err != nil {
		return nil, err
	}
	b := &bootSpec{id: r.ID, bundle: r.Bundle, size: size, guest: guest, pod: p, netns: guest.NetNS}
	if !joining {
		if b.host, err = hostLimits(spec, podSized(spec, p), r.ID, size.MemoryMiB); err != nil {
			return nil, err
		}
	}
	// A NIC when the container joins a network namespace (CRI's pod) or
	// hooks may configure one (nerdctl's network hook).
	b.withNet = !joining && (guest.NetNS != "" || (guest.HostHooks != nil &&
		len(guest.HostHooks.CreateRuntime)+len(guest.HostHooks.Prestart) > 0)) //nolint:staticcheck // Prestart is still run
	b.plan, err = rootfs.Prepare(ctx, r.ID, r.Rootfs, rootfs.Options{
		Disks:      b.diskBudget(joining),
		HostRootfs: filepath.Join(r.Bundle, "rootfs"),
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// diskBudget is how many disks the container's root may use: none when
// it joins a running VM (its images reach the guest as files in the VM's
// share), else what the VM has beside its NIC and its share (kept free
// even when the VM turns out to need no share).
func (b *bootSpec) diskBudget(joining bool) int {
	if joining {
		return 0
	}
	return vm.MaxDisks - 1 - b.nics()
}

func (b *bootSpec) nics() int {
	if b.withNet {
		return 1
	}
	return 0
}

// createInGuest has the agent build the container's root and prepare it.
func createInGuest(ctx context.Context, sb *sandbox, id string, b *bootSpec) error {
	phase.From(ctx).Begin(ctx, phase.GuestMounts)
	specJSON, err := json.Marshal(b.guest.Spec)
	if err != nil {
		return fmt.Errorf("encode guest spec: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	_, err = sb.vm.Agent.CreateContainer(ctx, &api.CreateContainerRequest{Id: id, Rootfs: b.plan.Mounts, Spec: specJSON})
	if err != nil {
		return fmt.Errorf("create container in the VM: %w", errgrpc.ToNative(err))
	}
	return nil
}
