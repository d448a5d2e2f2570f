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
)

// Create boots the sandbox's VM with the container's root as its disks and
// has the agent mount that root; the init process starts with Start.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	c, err := s.create(ctx, r)
	if err != nil {
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
	exists, booted := s.containers[r.ID] != nil, s.sandbox != nil
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	if booted {
		// A VM cannot take new disks once it runs (no hotplug on libkrun).
		return nil, fmt.Errorf("container %s would join a sandbox whose VM already runs; msb runs one container per VM: %w",
			r.ID, errdefs.ErrNotImplemented)
	}
	cfg, err := loadConfig(r.Options)
	if err != nil {
		return nil, fmt.Errorf("msb runtime options: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	boot, err := prepare(ctx, cfg, r)
	if err != nil {
		return nil, err
	}
	sb, err := startSandbox(ctx, cfg, boot)
	if err != nil {
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
		execs:       map[string]*process{},
	}
	if err := connectNetwork(ctx, sb, c, boot); err != nil {
		stopWatch()
		sb.cleanup(ctx)
		return nil, err
	}
	if err := createInGuest(ctx, sb, r.ID, boot); err != nil {
		stopWatch()
		sb.cleanup(ctx)
		return nil, err
	}
	s.mu.Lock()
	s.sandbox = sb
	s.containers[r.ID] = c
	s.mu.Unlock()
	go s.watchVM(sb)
	go s.watchOOM(wctx, sb, r.ID)
	return c, nil
}

// prepare reads and translates everything the VM needs before anything is
// started: bad input fails here and leaves nothing behind.
func prepare(ctx context.Context, cfg Config, r *taskAPI.CreateTaskRequest) (bootSpec, error) {
	spec, err := oci.Load(r.Bundle)
	if err != nil {
		return bootSpec{}, err
	}
	if err := oci.Process(spec.Process); err != nil {
		return bootSpec{}, err
	}
	guest, err := oci.GuestSpec(spec, oci.GuestOptions{ContainerID: r.ID, Root: rootfs.RootPath(r.ID)})
	if err != nil {
		return bootSpec{}, err
	}
	for _, w := range guest.Warnings {
		log.G(ctx).WithField("container", r.ID).Warn(w)
	}
	size, err := oci.VMSize(spec, oci.Defaults{VCPUs: cfg.DefaultVCPUs, MemoryMiB: cfg.DefaultMemoryMiB})
	if err != nil {
		return bootSpec{}, err
	}
	// A NIC when the container joins a network namespace (CRI's pod) or
	// hooks may configure one (nerdctl's network hook).
	withNet := guest.NetNS != "" || (guest.HostHooks != nil &&
		len(guest.HostHooks.CreateRuntime)+len(guest.HostHooks.Prestart) > 0) //nolint:staticcheck // Prestart is still run
	nics := 0
	if withNet {
		nics = 1
	}
	plan, err := rootfs.Prepare(ctx, r.ID, r.Rootfs, rootfs.Options{
		MaxDisks:   vm.MaxDisks - len(guest.Shares) - nics,
		HostRootfs: filepath.Join(r.Bundle, "rootfs"),
	})
	if err != nil {
		return bootSpec{}, err
	}
	return bootSpec{bundle: r.Bundle, size: size, guest: guest, plan: plan, withNet: withNet, netns: guest.NetNS}, nil
}

// createInGuest has the agent build the container's root and prepare it.
func createInGuest(ctx context.Context, sb *sandbox, id string, b bootSpec) error {
	specJSON, err := json.Marshal(b.guest.Spec)
	if err != nil {
		return fmt.Errorf("encode guest spec: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	_, err = sb.vm.Agent.CreateContainer(ctx, &api.CreateContainerRequest{
		Id:     id,
		Rootfs: append(append([]*api.Mount{}, b.guest.Mounts...), b.plan.Mounts...),
		Spec:   specJSON,
	})
	if err != nil {
		return fmt.Errorf("create container in the VM: %w", errgrpc.ToNative(err))
	}
	return nil
}
