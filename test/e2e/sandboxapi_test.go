//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/msb-runtime/msb/shim/sandboxapi"
)

// Each test is one line of the sandbox service's contract (issue 14,
// docs/design.md "Pods through the sandbox API"), driven over ttrpc.

// podConfig is a CRI pod config with the namespace modes given.
func podConfig(pid, ipc runtime.NamespaceMode) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Hostname: "e2e-sandbox",
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: pid, Ipc: ipc},
		}},
	}
}

func wantErr(t *testing.T, what string, err error, is func(error) bool) {
	t.Helper()
	if !is(errgrpc.ToNative(err)) {
		t.Fatalf("%s: %v", what, err)
	}
}

// The lifecycle and its states: created (not ready), started (ready, the
// VMM's pid, the creation time), pinged, stopped (not ready, an exit
// time), a second stop that does nothing, and the shim gone after
// shutdown.
func TestSandboxAPILifecycle(t *testing.T) {
	s := startShim(t)
	before := time.Now()
	if _, err := s.sandbox.CreateSandbox(s.ctx, &sandboxAPI.CreateSandboxRequest{
		SandboxID: s.id, BundlePath: s.bundle, Options: podOptions(t, podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD)),
	}); err != nil {
		t.Fatal(err)
	}
	if st := s.status(); st.State != "SANDBOX_NOTREADY" || st.Pid != 0 || st.CreatedAt.AsTime().Before(before.Add(-time.Second)) {
		t.Fatalf("created: %+v", st)
	}
	r, err := s.sandbox.StartSandbox(s.ctx, &sandboxAPI.StartSandboxRequest{SandboxID: s.id})
	if err != nil {
		t.Fatal(err)
	}
	vmm := vmms(procs(), s.shimPid)
	if len(vmm) != 1 || vmm[0].pid != int(r.Pid) {
		t.Fatalf("StartSandbox's pid %d is not the shim's one VMM %v", r.Pid, vmm)
	}
	if st := s.status(); st.State != "SANDBOX_READY" || st.Pid != r.Pid || st.ExitedAt != nil {
		t.Fatalf("started: %+v", st)
	}
	if _, err := s.sandbox.PingSandbox(s.ctx, &sandboxAPI.PingRequest{SandboxID: s.id}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	p, err := s.sandbox.Platform(s.ctx, &sandboxAPI.PlatformRequest{SandboxID: s.id})
	if err != nil || p.GetPlatform().GetOS() != "linux" || p.GetPlatform().GetArchitecture() != "amd64" {
		t.Fatalf("platform: %v %v", p, err)
	}
	for i := range 2 {
		if _, err := s.sandbox.StopSandbox(s.ctx, &sandboxAPI.StopSandboxRequest{SandboxID: s.id}); err != nil {
			t.Fatalf("stop %d: %v", i+1, err)
		}
	}
	st := s.status()
	if st.State != "SANDBOX_NOTREADY" || st.ExitedAt == nil || st.ExitedAt.AsTime().Before(st.CreatedAt.AsTime()) {
		t.Fatalf("stopped: %+v", st)
	}
	if _, err := s.sandbox.PingSandbox(s.ctx, &sandboxAPI.PingRequest{SandboxID: s.id}); err == nil {
		t.Fatal("a stopped sandbox answers pings")
	}
	if len(vmms(procs(), s.shimPid)) != 0 {
		t.Fatal("the VMM runs after StopSandbox")
	}
	if _, err := s.sandbox.ShutdownSandbox(s.ctx, &sandboxAPI.ShutdownSandboxRequest{SandboxID: s.id}); err != nil {
		t.Fatal(err)
	}
	if !waitGone(s.shimPid) {
		t.Fatal("the shim runs after ShutdownSandbox")
	}
}

// CreateSandbox twice is AlreadyExists.
func TestSandboxAPICreateTwice(t *testing.T) {
	s := startShim(t)
	req := &sandboxAPI.CreateSandboxRequest{SandboxID: s.id, BundlePath: s.bundle}
	if _, err := s.sandbox.CreateSandbox(s.ctx, req); err != nil {
		t.Fatal(err)
	}
	_, err := s.sandbox.CreateSandbox(s.ctx, req)
	wantErr(t, "second create", err, errdefs.IsAlreadyExists)
}

// StartSandbox before CreateSandbox is FailedPrecondition.
func TestSandboxAPIStartBeforeCreate(t *testing.T) {
	s := startShim(t)
	_, err := s.sandbox.StartSandbox(s.ctx, &sandboxAPI.StartSandboxRequest{SandboxID: s.id})
	wantErr(t, "start before create", err, errdefs.IsFailedPrecondition)
}

// WaitSandbox blocks while the sandbox runs and returns its exit once it
// is stopped.
func TestSandboxAPIWaitUnblocksOnStop(t *testing.T) {
	s := startShim(t)
	s.run(podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD), "")
	waited := make(chan *sandboxAPI.WaitSandboxResponse, 1)
	go func() {
		w, err := s.sandbox.WaitSandbox(s.ctx, &sandboxAPI.WaitSandboxRequest{SandboxID: s.id})
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		waited <- w
	}()
	// While the sandbox runs, Wait has not returned.
	s.status()
	select {
	case w := <-waited:
		t.Fatalf("WaitSandbox returned while the sandbox runs: %v", w)
	default:
	}
	if _, err := s.sandbox.StopSandbox(s.ctx, &sandboxAPI.StopSandboxRequest{SandboxID: s.id}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-waited:
		if w.GetExitStatus() != 0 || w.GetExitedAt() == nil {
			t.Fatalf("wait: %v", w)
		}
	case <-time.After(ctrTimeout):
		t.Fatal("WaitSandbox did not return after StopSandbox")
	}
}

// ShutdownSandbox releases everything: checked in the shim's own mount
// namespace once the sandbox stopped (no share, no root, no netns pin),
// then on the host once the shim is gone (startShim's leak check).
func TestSandboxAPIShutdownReleases(t *testing.T) {
	s := startShim(t)
	pid := s.run(podConfig(runtime.NamespaceMode_POD, runtime.NamespaceMode_POD), "").Pid
	m := s.addMember(pid, memberOpts{args: []string{"sleep", "100000"}, sharePID: true, shareIPC: true})
	if len(shimMounts(s.shimPid, "/run/msb/")) == 0 {
		t.Fatal("no share mounts in the shim's namespace while the pod runs: the check below would prove nothing")
	}
	if _, err := s.sandbox.StopSandbox(s.ctx, &sandboxAPI.StopSandboxRequest{SandboxID: s.id}); err != nil {
		t.Fatal(err)
	}
	// The member's task is still there, killed, until it is deleted.
	if w, err := s.tasks.Wait(s.ctx, &taskAPI.WaitRequest{ID: m.id}); err != nil || w.GetExitStatus() != 137 {
		t.Fatalf("member after StopSandbox: %v %v", w, err)
	}
	s.removeMember(m)
	if left := shimMounts(s.shimPid, "/run/msb/"); len(left) > 0 {
		t.Fatalf("mounts left in the shim's namespace after StopSandbox: %v", left)
	}
	if vmm := vmms(procs(), s.shimPid); len(vmm) > 0 {
		t.Fatalf("VMM left after StopSandbox: %v", vmm)
	}
	if _, err := s.sandbox.ShutdownSandbox(s.ctx, &sandboxAPI.ShutdownSandboxRequest{SandboxID: s.id}); err != nil {
		t.Fatal(err)
	}
	if !waitGone(s.shimPid) {
		t.Fatal("the shim runs after ShutdownSandbox")
	}
}

// Three members at once, each with its own output; an exec in one;
// deleting one leaves the others and the sandbox running.
func TestSandboxAPIMembers(t *testing.T) {
	s := startShim(t)
	pid := s.run(podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD), "").Pid
	var ms []member
	for i := range 3 {
		ms = append(ms, s.addMember(pid, memberOpts{args: []string{"sh", "-c",
			fmt.Sprintf("echo member-%d; exec sleep 100000", i)}}))
	}
	for i, m := range ms {
		s.waitOutput(m, fmt.Sprintf("member-%d", i))
		if out := m.output(); strings.Count(out, "member-") != 1 {
			t.Fatalf("member %d's output holds another's: %q", i, out)
		}
	}
	if out := s.mustExec(ms[1], "sh", "-c", "echo exec-ok; hostname"); out != "exec-ok\ne2e-sandbox\n" {
		t.Fatalf("exec: %q", out)
	}
	s.removeMember(ms[0])
	if st := s.taskStatus(ms[2].id); st.Status.String() != "RUNNING" {
		t.Fatalf("a member after another's delete: %v", st.Status)
	}
	if st := s.status(); st.State != "SANDBOX_READY" {
		t.Fatalf("the sandbox after a member's delete: %+v", st)
	}
	s.mustExec(ms[2], "true")
	// The sandbox's metrics: the VMM's cost on the host beside the
	// members' cgroups in the guest.
	mr, err := s.sandbox.SandboxMetrics(s.ctx, &sandboxAPI.SandboxMetricsRequest{SandboxID: s.id})
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(mr.GetMetrics().GetData())
	if err != nil {
		t.Fatal(err)
	}
	sm := v.(*sandboxapi.SandboxMetrics)
	vmm := slices.IndexFunc(sm.GetHost().GetProcesses(), func(p *sandboxapi.HostProcess) bool { return p.GetPid() == pid })
	if vmm < 0 || sm.Host.Processes[vmm].RssBytes == 0 || sm.Host.RssBytes < sm.Host.Processes[vmm].RssBytes || sm.Host.CpuUsec == 0 {
		t.Fatalf("host cost without the VMM (pid %d): %+v", pid, sm.GetHost())
	}
	if _, ok := sm.GetContainers()[ms[1].id]; !ok || len(sm.GetContainers()) != 2 {
		t.Fatalf("guest metrics for %v", slices.Collect(func(yield func(string) bool) {
			for k := range sm.GetContainers() {
				if !yield(k) {
					return
				}
			}
		}))
	}
}

// Shared namespaces: with the pod's PID namespace shared, PID 1 of every
// member is the pod's holder and a member's processes are visible to the
// other, yet a kill reaches only the target; the IPC namespace and
// /dev/shm are shared when the pod says so, the UTS namespace (hostname)
// always. Without sharing, each member has its own.
func TestSandboxAPISharedNamespaces(t *testing.T) {
	t.Run("shared", func(t *testing.T) {
		s := startShim(t)
		pid := s.run(podConfig(runtime.NamespaceMode_POD, runtime.NamespaceMode_POD), "").Pid
		o := memberOpts{args: []string{"sleep", "100000"}, sharePID: true, shareIPC: true}
		a, b := s.addMember(pid, o), s.addMember(pid, o)
		if p1, p2 := s.mustExec(a, "cat", "/proc/1/cmdline"), s.mustExec(b, "cat", "/proc/1/cmdline"); p1 != p2 || strings.Contains(p1, "sleep") {
			t.Fatalf("PID 1: %q in one member, %q in the other; want the pod's holder in both", p1, p2)
		}
		if n := s.mustExec(a, "sh", "-c", "ps | grep -c '[s]leep 100000'"); strings.TrimSpace(n) != "2" {
			t.Fatalf("a member sees %q sleeps of the pod, want 2", n)
		}
		s.mustExec(a, "sh", "-c", "echo shm-data > /dev/shm/x")
		if got := s.mustExec(b, "cat", "/dev/shm/x"); got != "shm-data\n" {
			t.Fatalf("/dev/shm not shared: %q", got)
		}
		if h := s.mustExec(b, "hostname"); h != "e2e-sandbox\n" {
			t.Fatalf("hostname %q", h)
		}
		// SIGKILL to all of a's processes leaves b's.
		if _, err := s.tasks.Kill(s.ctx, &taskAPI.KillRequest{ID: a.id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.tasks.Wait(s.ctx, &taskAPI.WaitRequest{ID: a.id}); err != nil {
			t.Fatal(err)
		}
		if st := s.taskStatus(b.id); st.Status.String() != "RUNNING" {
			t.Fatalf("the other member after the kill: %v", st.Status)
		}
		s.mustExec(b, "true")
	})
	t.Run("not shared", func(t *testing.T) {
		s := startShim(t)
		pid := s.run(podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_CONTAINER), "").Pid
		o := memberOpts{args: []string{"sleep", "100000"}}
		a, b := s.addMember(pid, o), s.addMember(pid, o)
		if p1 := s.mustExec(a, "cat", "/proc/1/cmdline"); !strings.HasPrefix(p1, "sleep") {
			t.Fatalf("PID 1 of a member with its own PID namespace: %q", p1)
		}
		s.mustExec(a, "sh", "-c", "echo shm-data > /dev/shm/x")
		if out, st := s.exec(b, "cat", "/dev/shm/x"); st == 0 {
			t.Fatalf("/dev/shm shared without the pod asking: %q", out)
		}
	})
}

// An OOM in one member kills only that member.
func TestSandboxAPIOOM(t *testing.T) {
	s := startShim(t)
	pc := podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD)
	pc.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}
	pid := s.run(pc, "").Pid
	other := s.addMember(pid, memberOpts{args: []string{"sleep", "100000"}})
	hog := s.addMember(pid, memberOpts{args: []string{"sh", "-c", "dd if=/dev/zero of=/dev/null bs=96M count=1"}, memoryLimit: 32 << 20})
	w, err := s.tasks.Wait(s.ctx, &taskAPI.WaitRequest{ID: hog.id})
	if err != nil || w.GetExitStatus() != 137 {
		t.Fatalf("the member over its limit: exit %d (%v), output %q", w.GetExitStatus(), err, hog.output())
	}
	if st := s.taskStatus(other.id); st.Status.String() != "RUNNING" {
		t.Fatalf("the other member after the OOM: %v", st.Status)
	}
	if st := s.status(); st.State != "SANDBOX_READY" {
		t.Fatalf("the sandbox after the OOM: %+v", st)
	}
}

// A host volume reaches a member as a share.
func TestSandboxAPIVolume(t *testing.T) {
	s := startShim(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := s.run(podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD), "").Pid
	m := s.addMember(pid, memberOpts{args: []string{"sleep", "100000"},
		mounts: []specs.Mount{{Destination: "/vol", Type: "bind", Source: dir, Options: []string{"rbind", "rw"}}}})
	if got := s.mustExec(m, "cat", "/vol/data"); got != "from-the-host\n" {
		t.Fatalf("volume: %q", got)
	}
	s.mustExec(m, "sh", "-c", "echo from-the-guest > /vol/back")
	if b, err := os.ReadFile(filepath.Join(dir, "back")); err != nil || string(b) != "from-the-guest\n" {
		t.Fatalf("write through the volume: %q %v", b, err)
	}
}

// A member's traffic leaves through the pod's network namespace: a peer
// reachable only from that namespace answers the member, and the pod's
// interface counts the packets.
func TestSandboxAPINetwork(t *testing.T) {
	// Before the shim starts, as CRI makes it: the shim's mount namespace
	// is a copy of the host's.
	podNS := netnsPair(t)
	s := startShim(t)
	pid := s.run(podConfig(runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_POD), "/run/netns/"+podNS).Pid
	m := s.addMember(pid, memberOpts{args: []string{"sleep", "100000"}})
	before := txPackets(t, podNS)
	if out, st := s.exec(m, "ping", "-c", "3", "-W", "5", "10.77.0.1"); st != 0 {
		t.Fatalf("ping of the pod network's peer: exit %d: %s", st, out)
	}
	if after := txPackets(t, podNS); after < before+3 {
		t.Fatalf("the pod's interface sent %d packets during the ping, want 3 or more", after-before)
	}
	if !strings.Contains(s.mustExec(m, "ip", "-4", "-o", "addr"), " 10.77.0.2/24") {
		t.Fatal("the member lacks the pod's address")
	}
}

// netnsPair makes a pod network namespace whose veth (10.77.0.2/24) leads
// to a peer namespace (10.77.0.1/24), as a CNI plugin would; both go when
// the test ends.
func netnsPair(t *testing.T) (pod string) {
	t.Helper()
	pod, peer := "e2e-pod-"+runToken, "e2e-peer-"+runToken
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", pod)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
	run("netns", "add", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", peer).Run() })
	run("link", "add", "e2e"+runToken, "netns", pod, "type", "veth", "peer", "name", "e2ep"+runToken, "netns", peer)
	run("-n", pod, "addr", "add", "10.77.0.2/24", "dev", "e2e"+runToken)
	run("-n", peer, "addr", "add", "10.77.0.1/24", "dev", "e2ep"+runToken)
	for _, ns := range [][2]string{{pod, "e2e" + runToken}, {peer, "e2ep" + runToken}} {
		run("-n", ns[0], "link", "set", ns[1], "up")
		run("-n", ns[0], "link", "set", "lo", "up")
	}
	return pod
}

// txPackets is what the pod namespace's veth has sent.
func txPackets(t *testing.T, ns string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/sys/class/net/e2e"+runToken+"/statistics/tx_packets").Output()
	if err != nil {
		t.Fatalf("tx_packets: %v", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
