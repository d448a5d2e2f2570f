package sandboxapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// The sandbox service's contract on a fake VM and a fake task service;
// the e2e tests run it on a real VM (test/e2e/sandboxapi_test.go).

type fakeVM struct {
	bootErr  error
	booted   *sandbox.BootSpec
	done     chan struct{}
	once     sync.Once
	stops    atomic.Int32
	stopping atomic.Bool
}

func newFakeVM() *fakeVM { return &fakeVM{done: make(chan struct{})} }

func (f *fakeVM) Boot(_ context.Context, b *sandbox.BootSpec) error {
	f.booted = b
	return f.bootErr
}
func (f *fakeVM) Join(context.Context, *sandbox.Member) error { return nil }
func (f *fakeVM) Leave(context.Context, string) error         { return nil }
func (f *fakeVM) Stop(context.Context) error {
	f.stops.Add(1)
	f.stopping.Store(true)
	f.end()
	return nil
}
func (f *fakeVM) end()                  { f.once.Do(func() { close(f.done) }) }
func (f *fakeVM) Kill()                 { f.end() }
func (f *fakeVM) Agent() *api.Client    { return nil }
func (f *fakeVM) Pid() uint32           { return 4242 }
func (f *fakeVM) Done() <-chan struct{} { return f.done }
func (f *fakeVM) Err() error            { return nil }
func (f *fakeVM) Ending() bool {
	select {
	case <-f.done:
		return true
	default:
		return f.stopping.Load()
	}
}

type fakeTasks struct {
	adopted  sandbox.Sandbox
	released bool
}

func (f *fakeTasks) RegisterTTRPC(*ttrpc.Server) error { return nil }
func (f *fakeTasks) Adopt(_ string, sb sandbox.Sandbox) error {
	f.adopted = sb
	return nil
}
func (f *fakeTasks) Release()             { f.released = true }
func (f *fakeTasks) Containers() []string { return nil }

type fakeShutdown struct {
	called atomic.Bool
	once   sync.Once
	done   chan struct{}
}

func (f *fakeShutdown) Shutdown()                                          { f.called.Store(true); f.once.Do(func() { close(f.done) }) }
func (f *fakeShutdown) RegisterCallback(func(context.Context) error)       {}
func (f *fakeShutdown) Done() <-chan struct{}                              { return nil }
func (f *fakeShutdown) Err() error                                         { return nil }
func (f *fakeShutdown) CloseOnShutdown(interface{ Close() error })         {}
func (f *fakeShutdown) CloseOnShutdownWithCtx(func(context.Context) error) {}

type rig struct {
	t     *testing.T
	s     *Service
	vm    *fakeVM
	tasks *fakeTasks
	sd    *fakeShutdown
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, vm: newFakeVM(), tasks: &fakeTasks{}, sd: &fakeShutdown{done: make(chan struct{})}}
	r.s = New(context.Background(), r.tasks, r.sd)
	r.s.shutdownDelay = 0
	r.s.newSandbox = func() sandbox.Sandbox { return r.vm }
	r.s.inGuest = func(context.Context, *pod, sandbox.Sandbox) error { return nil }
	return r
}

func (r *rig) create(id string, pc *runtime.PodSandboxConfig) error {
	req := &sandboxAPI.CreateSandboxRequest{SandboxID: id, BundlePath: r.t.TempDir(), NetnsPath: "/var/run/netns/x"}
	if pc != nil {
		a, err := typeurl.MarshalAnyToProto(pc)
		if err != nil {
			r.t.Fatal(err)
		}
		req.Options = a
	}
	_, err := r.s.CreateSandbox(context.Background(), req)
	return err
}

func (r *rig) status(id string) *sandboxAPI.SandboxStatusResponse {
	r.t.Helper()
	st, err := r.s.SandboxStatus(context.Background(), &sandboxAPI.SandboxStatusRequest{SandboxID: id})
	if err != nil {
		r.t.Fatalf("status: %v", err)
	}
	return st
}

func is(t *testing.T, what string, err error, kind func(error) bool) {
	t.Helper()
	if !kind(errgrpc.ToNative(err)) {
		t.Fatalf("%s: %v", what, err)
	}
}

var _ shim.TTRPCService = (*Service)(nil)

func TestSandboxLifecycle(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if err := r.create("sb1", nil); err != nil {
		t.Fatal(err)
	}
	is(t, "second create", r.create("sb1", nil), errdefs.IsAlreadyExists)
	if st := r.status("sb1"); st.State != stateNotReady || st.Pid != 0 {
		t.Fatalf("created: %+v", st)
	}
	resp, err := r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb1"})
	if err != nil || resp.Pid != 4242 || resp.CreatedAt == nil || r.tasks.adopted != r.vm {
		t.Fatalf("start: %v %v; the task service got %v", resp, err, r.tasks.adopted)
	}
	if b := r.vm.booted; !b.Pod || b.First != nil || b.NetNS != "/var/run/netns/x" || b.PodFiles == nil || b.PodFiles.ID != "sb1" {
		t.Fatalf("boot spec %+v", b)
	}
	_, err = r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb1"})
	is(t, "second start", err, errdefs.IsFailedPrecondition)
	if st := r.status("sb1"); st.State != stateReady || st.Pid != 4242 || st.ExitedAt != nil {
		t.Fatalf("started: %+v", st)
	}
	pf, err := r.s.Platform(ctx, &sandboxAPI.PlatformRequest{SandboxID: "sb1"})
	if err != nil || pf.Platform.OS != "linux" {
		t.Fatalf("platform: %v %v", pf, err)
	}
	waited := make(chan *sandboxAPI.WaitSandboxResponse, 1)
	go func() {
		w, err := r.s.WaitSandbox(ctx, &sandboxAPI.WaitSandboxRequest{SandboxID: "sb1"})
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		waited <- w
	}()
	for range 2 {
		if _, err := r.s.StopSandbox(ctx, &sandboxAPI.StopSandboxRequest{SandboxID: "sb1"}); err != nil {
			t.Fatalf("stop: %v", err)
		}
	}
	if w := <-waited; w.GetExitStatus() != 0 || w.GetExitedAt() == nil {
		t.Fatalf("wait after stop: %v", w)
	}
	if st := r.status("sb1"); st.State != stateNotReady || st.ExitedAt == nil {
		t.Fatalf("stopped: %+v", st)
	}
	_, err = r.s.PingSandbox(ctx, &sandboxAPI.PingRequest{SandboxID: "sb1"})
	is(t, "ping of a stopped sandbox", err, errdefs.IsUnavailable)
	if _, err := r.s.ShutdownSandbox(ctx, &sandboxAPI.ShutdownSandboxRequest{SandboxID: "sb1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.sd.done:
	case <-time.After(10 * time.Second):
	}
	if !r.tasks.released || !r.sd.called.Load() || r.vm.stops.Load() != 1 {
		t.Fatalf("shutdown: released %v, shim shut down %v, %d VM stops", r.tasks.released, r.sd.called.Load(), r.vm.stops.Load())
	}
}

// Calls out of order or for another sandbox.
func TestSandboxRefusals(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	_, err := r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb1"})
	is(t, "start before create", err, errdefs.IsFailedPrecondition)
	_, err = r.s.SandboxStatus(ctx, &sandboxAPI.SandboxStatusRequest{SandboxID: "sb1"})
	is(t, "status before create", err, errdefs.IsNotFound)
	is(t, "create without an id", r.create("", nil), errdefs.IsInvalidArgument)
	if err := r.create("sb1", nil); err != nil {
		t.Fatal(err)
	}
	_, err = r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb2"})
	is(t, "start of another sandbox", err, errdefs.IsNotFound)
	_, err = r.s.UpdateSandbox(ctx, &sandboxAPI.UpdateSandboxRequest{SandboxID: "sb1"})
	is(t, "update", err, errdefs.IsNotImplemented)
	// A boot that fails leaves the sandbox created: it may be started again.
	r.vm.bootErr = errors.New("no VM")
	_, err = r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb1"})
	if err == nil || r.tasks.adopted != nil {
		t.Fatalf("failed boot: %v, adopted %v", err, r.tasks.adopted)
	}
	r.vm.bootErr = nil
	if _, err := r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb1"}); err != nil {
		t.Fatalf("start after a failed boot: %v", err)
	}
}

// A VM that ends by itself ends the sandbox as killed.
func TestSandboxVMEnds(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if err := r.create("sb1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.StartSandbox(ctx, &sandboxAPI.StartSandboxRequest{SandboxID: "sb1"}); err != nil {
		t.Fatal(err)
	}
	r.vm.Kill()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := r.s.WaitSandbox(wctx, &sandboxAPI.WaitSandboxRequest{SandboxID: "sb1"})
	if err != nil || w.ExitStatus != 137 {
		t.Fatalf("wait: %v %v", w, err)
	}
}

// The VM is sized from the pod's limits, its host cgroup goes under the
// pod's cgroup parent, and the pod's files follow its config.
func TestPodFromConfig(t *testing.T) {
	r := newRig(t)
	pc := &runtime.PodSandboxConfig{
		Hostname:  "pod-host",
		DnsConfig: &runtime.DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"a.b"}, Options: []string{"ndots:5"}},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/podx",
			Resources:    &runtime.LinuxContainerResources{MemoryLimitInBytes: 512 << 20, CpuQuota: 200000, CpuPeriod: 100000},
		},
	}
	if err := r.create("sb1", pc); err != nil {
		t.Fatal(err)
	}
	b := r.s.pod.boot
	if b.Size.MemoryMiB != 512+64 || b.Size.VCPUs != 2 || b.Host.Cgroup != "/kubepods/podx/msb-sb1" || b.Host.CPUQuota != 200000 {
		t.Fatalf("size %+v, host %+v", b.Size, b.Host)
	}
	f := b.PodFiles
	want := "search a.b\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n"
	if f.Hostname != "pod-host\n" || f.ResolvConf != want || !strings.Contains(f.Hosts, "localhost") || f.ShmSize != shmSize {
		t.Fatalf("pod files %+v", f)
	}
	if p := (&pod{id: "sb1", cfg: &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: "kubepods-podx.slice"}}}); p.cgroupSpec().Linux.CgroupsPath != "kubepods-podx.slice:cri-containerd:sb1" {
		t.Fatalf("systemd parent: %q", p.cgroupSpec().Linux.CgroupsPath)
	}
}

// The pod in the guest: a PID namespace holder only when the pod shares
// one, its user namespace, hostname and sysctls with containerd's
// defaults.
func TestPodGuestSpec(t *testing.T) {
	p := &pod{id: "sb1", cfg: &runtime.PodSandboxConfig{Hostname: "h", Linux: &runtime.LinuxPodSandboxConfig{
		Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"},
		SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
			Pid: runtime.NamespaceMode_CONTAINER,
			UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
				Uids: []*runtime.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}},
				Gids: []*runtime.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}}},
		}},
	}}}
	if p.sharesPID() {
		t.Fatal("a CONTAINER-mode pod shares its PID namespace")
	}
	s := p.guestSpec()
	if s.Hostname != "h" || s.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" || s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Fatalf("hostname %q sysctls %v", s.Hostname, s.Linux.Sysctl)
	}
	if _, ok := s.Linux.Sysctl["net.ipv4.ping_group_range"]; ok {
		t.Fatal("ping_group_range set for a pod with a user namespace")
	}
	if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 65536 {
		t.Fatalf("uid mappings %v", s.Linux.UIDMappings)
	}
	if !(&pod{cfg: &runtime.PodSandboxConfig{}}).sharesPID() {
		t.Fatal("CRI's zero namespace mode is POD: the pod shares its PID namespace")
	}
}

// What containerd's pause path refuses of a pod's user namespace, and
// the node's PID namespace, which in a VM is the VM's.
func TestPodNamespaceModes(t *testing.T) {
	withNS := func(ns *runtime.NamespaceOption) *pod {
		return &pod{id: "sb1", cfg: &runtime.PodSandboxConfig{Linux: &runtime.LinuxPodSandboxConfig{
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: ns}}}}
	}
	m := []*runtime.IDMapping{{HostId: 65536, Length: 65536}}
	for mode, ok := range map[runtime.NamespaceMode]bool{
		runtime.NamespaceMode_CONTAINER: false, runtime.NamespaceMode_TARGET: false, runtime.NamespaceMode_NODE: true,
	} {
		err := withNS(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: mode}}).checkUserns()
		if (err == nil) != ok {
			t.Errorf("user namespace mode %s: %v", mode, err)
		}
	}
	if err := withNS(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}}).checkUserns(); err == nil {
		t.Error("a pod user namespace without mappings")
	}
	if err := withNS(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m}}).checkUserns(); err != nil {
		t.Error(err)
	}
	node := withNS(&runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE})
	if !node.holdsPID() || node.sharesPID() || slices.ContainsFunc(node.guestSpec().Linux.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == specs.PIDNamespace
	}) {
		t.Error("the node's PID namespace: a holder in the VM's own")
	}
}
