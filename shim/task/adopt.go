package task

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/shim/sandbox"
)

// Service is the shim's task service, as the plugin registers it and the
// sandbox service drives it.
type Service interface {
	shim.TTRPCService
	// Adopt makes sb, which the sandbox API booted for pod id, the VM
	// that every container created from now on joins. The sandbox API
	// owns its life: the last container's Delete leaves it running.
	Adopt(id string, sb sandbox.Sandbox) error
	// Release forgets it once the sandbox API shut it down: the shim may
	// end with its last container.
	Release()
	// Containers lists the containers of the sandbox.
	Containers() []string
}

// New returns the task service.
func New(ctx context.Context, pub shim.Publisher, sd shutdown.Service) Service {
	return newService(ctx, pub, sd)
}

// Adopt takes the sandbox API's VM.
func (s *service) Adopt(id string, sb sandbox.Sandbox) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb != nil {
		return fmt.Errorf("the shim runs a VM already: %w", errdefs.ErrAlreadyExists)
	}
	s.sb, s.pod, s.byAPI = sb, id, true
	go s.watchVM(sb)
	return nil
}

// Release lets the shim end once no container is left.
func (s *service) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byAPI = false
}

// withPodFiles binds the pod's files (sandbox.PodFiles) into a container
// of a pod booted by the sandbox API, where containerd's pause path would
// bind its own: /etc/hostname, /etc/hosts and /etc/resolv.conf unless the
// spec mounts something there itself, and the pod's /dev/shm when the
// container shares the pod's IPC namespace.
func withPodFiles(g *specs.Spec, pod string, sharesIPC bool) {
	mode := "rw"
	if g.Root != nil && g.Root.Readonly {
		mode = "ro"
	}
	bind := func(dst, name string) specs.Mount {
		return specs.Mount{Destination: dst, Type: "bind", Source: sandbox.GuestPath(pod, name), Options: []string{"rbind", mode}}
	}
	mounted := func(dst string) bool {
		return slices.ContainsFunc(g.Mounts, func(m specs.Mount) bool { return m.Destination == dst })
	}
	for dst, name := range map[string]string{
		"/etc/hostname": sandbox.PodHostname, "/etc/hosts": sandbox.PodHosts, "/etc/resolv.conf": sandbox.PodResolvConf,
	} {
		if !mounted(dst) {
			g.Mounts = append(g.Mounts, bind(dst, name))
		}
	}
	if !sharesIPC {
		return
	}
	shm := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: sandbox.GuestPath(pod, sandbox.PodShm), Options: []string{"rbind", "rw"}}
	if i := slices.IndexFunc(g.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" }); i >= 0 {
		g.Mounts[i] = shm
	} else {
		g.Mounts = append(g.Mounts, shm)
	}
}

// sharesIPC says whether the container joins its pod's IPC namespace
// (CRI's POD mode names the sandbox's).
func sharesIPC(s *specs.Spec) bool {
	if s.Linux == nil {
		return false
	}
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == specs.IPCNamespace && n.Path != ""
	})
}

// Containers lists the containers of the shim's sandbox.
func (s *service) Containers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	return ids
}
