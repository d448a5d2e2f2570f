package sandboxapi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strings"

	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/pause"
	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// pod is a sandbox as CreateSandbox prepares it.
type pod struct {
	id   string
	boot *sandbox.BootSpec
	cfg  *runtime.PodSandboxConfig
}

// shmSize is the pod's /dev/shm, as containerd's pause path makes it.
const shmSize = 64 << 20

// newPod reads the request: the runtime options the bootstrap kept in the
// bundle, CRI's pod config (its resources size the VM, its cgroup parent
// holds the VM's host cgroup), the network namespace.
func newPod(ctx context.Context, r *sandboxAPI.CreateSandboxRequest) (*pod, error) {
	if r.GetSandboxID() == "" || r.GetBundlePath() == "" {
		return nil, fmt.Errorf("a sandbox needs an id and a bundle: %w", errdefs.ErrInvalidArgument)
	}
	opts, err := sandbox.ReadOptions(r.GetBundlePath())
	if err != nil {
		return nil, err
	}
	cfg, err := sandbox.LoadConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("msb runtime options: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	pc, err := podConfig(r)
	if err != nil {
		return nil, err
	}
	p := &pod{id: r.GetSandboxID(), cfg: pc}
	if err := p.checkUserns(); err != nil {
		return nil, err
	}
	sized := p.sized()
	size, err := oci.VMSize(sized, oci.Defaults{VCPUs: cfg.DefaultVCPUs, MemoryMiB: cfg.DefaultMemoryMiB})
	if err != nil {
		return nil, err
	}
	host, err := sandbox.HostLimits(p.cgroupSpec(), sized, p.id, size.MemoryMiB)
	if err != nil {
		return nil, err
	}
	files, err := p.files()
	if err != nil {
		return nil, err
	}
	p.boot = &sandbox.BootSpec{
		Bundle: r.GetBundlePath(), Config: cfg, Size: size, Host: host,
		Net: r.GetNetnsPath() != "", NetNS: r.GetNetnsPath(), Pod: true, PodFiles: files,
	}
	return p, nil
}

// podConfig is CRI's pod config from the request's options; an empty one
// when the caller is not CRI.
func podConfig(r *sandboxAPI.CreateSandboxRequest) (*runtime.PodSandboxConfig, error) {
	if r.GetOptions() == nil || r.GetOptions().GetTypeUrl() == "" {
		return &runtime.PodSandboxConfig{}, nil
	}
	v, err := typeurl.UnmarshalAny(r.GetOptions())
	if err != nil {
		return nil, fmt.Errorf("sandbox options: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	pc, ok := v.(*runtime.PodSandboxConfig)
	if !ok {
		return nil, fmt.Errorf("sandbox options of type %s are not CRI's pod config: %w", r.GetOptions().GetTypeUrl(), errdefs.ErrInvalidArgument)
	}
	return pc, nil
}

// sized is the spec the VM is sized from: the pod's limits.
func (p *pod) sized() *specs.Spec {
	res := p.cfg.GetLinux().GetResources()
	s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	if m := res.GetMemoryLimitInBytes(); m > 0 {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if q := res.GetCpuQuota(); q > 0 {
		s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &q}
		if period := uint64(res.GetCpuPeriod()); period > 0 {
			s.Linux.Resources.CPU.Period = &period
		}
	}
	return s
}

// cgroupSpec names the cgroup runc would give the pod, so that the VM's
// host cgroup goes beside it: under the pod's cgroup parent, a systemd
// slice ("….slice") or a cgroupfs path.
func (p *pod) cgroupSpec() *specs.Spec {
	parent := p.cfg.GetLinux().GetCgroupParent()
	s := &specs.Spec{Linux: &specs.Linux{}}
	switch {
	case parent == "":
	case strings.HasSuffix(parent, ".slice"):
		s.Linux.CgroupsPath = parent + ":cri-containerd:" + p.id
	default:
		s.Linux.CgroupsPath = path.Join(parent, p.id)
	}
	return s
}

// files are the pod's /etc/hostname, /etc/hosts and /etc/resolv.conf, as
// containerd's pause path writes them.
func (p *pod) files() (*sandbox.PodFiles, error) {
	hostname := p.cfg.GetHostname()
	if hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("hostname: %w", err)
		}
		hostname = h
	}
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return nil, fmt.Errorf("pod /etc/hosts: %w", err)
	}
	resolv, err := p.resolvConf()
	if err != nil {
		return nil, err
	}
	return &sandbox.PodFiles{ID: p.id, Hostname: hostname + "\n", Hosts: string(hosts), ResolvConf: resolv, ShmSize: shmSize}, nil
}

// resolvConf is the pod's DNS config, or the host's when it has none.
func (p *pod) resolvConf() (string, error) {
	dns := p.cfg.GetDnsConfig()
	if dns == nil {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil {
			return "", fmt.Errorf("pod /etc/resolv.conf: %w", err)
		}
		return string(b), nil
	}
	var b strings.Builder
	if len(dns.GetSearches()) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.GetOptions()) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
	}
	return b.String(), nil
}

// nsOptions are the pod's namespace options.
func (p *pod) nsOptions() *runtime.NamespaceOption {
	return p.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

// hasUserns says whether the pod has a user namespace of its own (CRI's
// POD mode is the zero value: no options means none).
func (p *pod) hasUserns() bool {
	u := p.nsOptions().GetUsernsOptions()
	return u != nil && u.GetMode() == runtime.NamespaceMode_POD
}

// checkUserns refuses what containerd's pause path refuses: a user
// namespace mode other than the pod's own or the node's, and a pod user
// namespace without mappings (or the node's with some).
func (p *pod) checkUserns() error {
	u := p.nsOptions().GetUsernsOptions()
	if u == nil {
		return nil
	}
	mapped := len(u.GetUids()) > 0 && len(u.GetGids()) > 0
	switch mode := u.GetMode(); {
	case mode == runtime.NamespaceMode_POD && !mapped:
		return fmt.Errorf("user namespace mode %s without uid and gid mappings: %w", mode, errdefs.ErrInvalidArgument)
	case mode == runtime.NamespaceMode_NODE && (len(u.GetUids())+len(u.GetGids()) > 0):
		return fmt.Errorf("user namespace mode %s with mappings: %w", mode, errdefs.ErrInvalidArgument)
	case mode != runtime.NamespaceMode_POD && mode != runtime.NamespaceMode_NODE:
		return fmt.Errorf("unsupported user namespace mode %s: %w", mode, errdefs.ErrInvalidArgument)
	}
	return nil
}

// holdsPID says whether a process holds the PID namespace the pod's
// containers join: a namespace of the pod's own (POD), or the VM's, which
// is what the node's means in a VM (NODE, as a pause container there would
// be in it). Each container has its own otherwise.
func (p *pod) holdsPID() bool { return p.nsOptions().GetPid() != runtime.NamespaceMode_CONTAINER }

// sharesPID says whether the pod has a PID namespace of its own.
func (p *pod) sharesPID() bool { return p.nsOptions().GetPid() == runtime.NamespaceMode_POD }

// createInGuest makes the pod in the guest: a container of the pod's id
// without a process, whose creation sets the pod's hostname and sysctls
// for the VM; when the pod's containers share a PID namespace, its process
// holds it (agent/pause), and they join it as they join a pause
// container's.
func (p *pod) createInGuest(ctx context.Context, a *api.Client) error {
	spec, err := json.Marshal(p.guestSpec())
	if err != nil {
		return err
	}
	root := rootfs.RootPath(p.id)
	plan := []*api.Mount{{Type: "bind", Source: "/", Target: root, Options: []string{"bind", "ro"}}}
	actx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
	defer cancel()
	if _, err := a.CreateContainer(actx, &api.CreateContainerRequest{Id: p.id, Rootfs: plan, Spec: spec}); err != nil {
		return fmt.Errorf("create the pod in the VM: %w", errgrpc.ToNative(err))
	}
	if !p.holdsPID() {
		return nil
	}
	proc, err := json.Marshal(p.guestSpec().Process)
	if err != nil {
		return err
	}
	if _, err := a.StartProcess(actx, &api.StartProcessRequest{ContainerId: p.id, Process: proc}); err != nil {
		return fmt.Errorf("start the pod's PID namespace in the VM: %w", errgrpc.ToNative(err))
	}
	return nil
}

// guestSpec is the pod's guest container: the boot disk's root, read-only
// (its /init is msb-agent, run as the pause), a PID and a mount namespace
// of its own, the pod's user namespace, hostname and sysctls.
func (p *pod) guestSpec() *specs.Spec {
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"/init"}, Env: []string{pause.ModeEnv + "=" + pause.ModePause}, Cwd: "/",
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: rootfs.RootPath(p.id), Readonly: true},
		Hostname: p.cfg.GetHostname(),
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			// The root is read-only: its device nodes go on a tmpfs.
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=64k"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}},
			Sysctl:     p.sysctls(),
		},
	}
	if p.sharesPID() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if u := p.nsOptions().GetUsernsOptions(); p.hasUserns() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings, s.Linux.GIDMappings = idMappings(u.GetUids()), idMappings(u.GetGids())
	}
	return s
}

// sysctls are the pod's, with the defaults containerd's pause path adds
// for a pod with a network namespace of its own.
func (p *pod) sysctls() map[string]string {
	s := map[string]string{}
	for k, v := range p.cfg.GetLinux().GetSysctls() {
		s[k] = v
	}
	if p.nsOptions().GetNetwork() == runtime.NamespaceMode_NODE {
		return s
	}
	if _, ok := s["net.ipv4.ip_unprivileged_port_start"]; !ok {
		s["net.ipv4.ip_unprivileged_port_start"] = "0"
	}
	if _, ok := s["net.ipv4.ping_group_range"]; !ok && !p.hasUserns() {
		s["net.ipv4.ping_group_range"] = "0 2147483647"
	}
	return s
}

func idMappings(ms []*runtime.IDMapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range ms {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}
