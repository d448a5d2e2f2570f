//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The sandbox service driven directly over ttrpc, as containerd's shim
// sandboxer drives it: the test bootstraps the shim itself (stdin
// BootstrapParams, stdout BootstrapResult), calls the sandbox API on the
// connection, and creates the pod's containers through the task API on the
// same connection.

// sbShim is one shim bootstrapped for a sandbox.
type sbShim struct {
	t        *testing.T
	id       string
	bundle   string
	ctx      context.Context
	conn     *ttrpc.Client
	sandbox  sandboxAPI.TTRPCSandboxService
	tasks    taskAPI.TTRPCTaskService
	shimPid  int
	socket   string
	log      *syncBuffer
	memberNo int
}

// startShim bootstraps a shim for a new sandbox id; the test's end shuts
// it down, has a "shim delete" undo what it left, and fails on leaks.
func startShim(t *testing.T) *sbShim {
	t.Helper()
	skipUnlessMSB(t, "drives containerd-shim-msb-v1's sandbox API")
	before := captureHostState(t)
	id := newID(t)
	s := &sbShim{t: t, id: id, bundle: filepath.Join(t.TempDir(), id), log: &syncBuffer{}}
	s.ctx = namespacedCtx(context.Background())
	if err := os.MkdirAll(filepath.Join(s.bundle, "rootfs"), 0o711); err != nil {
		t.Fatal(err)
	}
	s.openLog()
	res := s.bootstrap()
	s.socket = strings.TrimPrefix(res.GetAddress(), "unix://")
	// As containerd keeps it: "shim delete" reads the socket from it.
	boot, _ := json.Marshal(map[string]any{"version": res.GetVersion(), "address": res.GetAddress(), "protocol": res.GetProtocol()})
	if err := os.WriteFile(filepath.Join(s.bundle, "bootstrap.json"), boot, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		t.Fatalf("dial the shim at %s: %v", res.GetAddress(), err)
	}
	s.conn = ttrpc.NewClient(c)
	s.sandbox = sandboxAPI.NewTTRPCSandboxClient(s.conn)
	s.tasks = taskAPI.NewTTRPCTaskClient(s.conn)
	cr, err := s.tasks.Connect(s.ctx, &taskAPI.ConnectRequest{ID: id})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	s.shimPid = int(cr.GetShimPid())
	t.Cleanup(func() {
		s.shutdown()
		if t.Failed() {
			t.Logf("shim log:\n%s", s.log.String())
		}
		checkNoLeaks(t, before)
	})
	return s
}

// namespacedCtx carries the suite's namespace, in the ttrpc header
// containerd sends it in.
func namespacedCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, namespace)
}

// openLog makes the FIFO the shim server logs to (containerd reads it).
func (s *sbShim) openLog() {
	p := filepath.Join(s.bundle, "log")
	if err := unix.Mkfifo(p, 0o700); err != nil {
		s.t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0) // RDWR: the open does not wait for the shim
	if err != nil {
		s.t.Fatal(err)
	}
	go func() { _, _ = io.Copy(s.log, f) }()
	s.t.Cleanup(func() { f.Close() })
}

// bootstrap runs `containerd-shim-msb-v1 start` as containerd does.
func (s *sbShim) bootstrap() *bootapi.BootstrapResult {
	s.t.Helper()
	sockDir := envOr("MSB_CONTAINERD_SOCKET_DIR", "/run/msb-test/s")
	params := &bootapi.BootstrapParams{
		InstanceID: s.id, Namespace: namespace, ContainerdGrpcAddress: socket,
		ContainerdTtrpcAddress: socket + ".ttrpc", SocketDir: &sockDir,
	}
	in, err := proto.Marshal(params)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := s.shimCommand("start")
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("shim start: %v\n%s", err, stderr.String())
	}
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out.Bytes(), &res); err != nil || res.GetVersion() != 3 {
		s.t.Fatalf("bootstrap result %v: %v (want version 3)", &res, err)
	}
	return &res
}

func (s *sbShim) shimCommand(action string) *exec.Cmd {
	cmd := exec.Command(shimName(), "-namespace", namespace, "-address", socket, "-id", s.id, action)
	cmd.Dir = s.bundle
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+socket+".ttrpc", "GRPC_ADDRESS="+socket, "NAMESPACE="+namespace)
	return cmd
}

// shutdown ends the sandbox and the shim and runs "shim delete", which
// undoes what a shim that did not end cleanly left.
func (s *sbShim) shutdown() {
	ctx, cancel := context.WithTimeout(s.ctx, ctrTimeout)
	defer cancel()
	_, _ = s.sandbox.ShutdownSandbox(ctx, &sandboxAPI.ShutdownSandboxRequest{SandboxID: s.id})
	s.conn.Close()
	if !waitGone(s.shimPid) {
		s.t.Errorf("the shim (pid %d) still runs after ShutdownSandbox; killing it", s.shimPid)
		_ = syscall.Kill(s.shimPid, syscall.SIGKILL)
		waitGone(s.shimPid)
	}
	if out, err := s.shimCommand("delete").CombinedOutput(); err != nil {
		s.t.Errorf("shim delete: %v\n%s", err, out)
	}
}

// waitGone waits until pid is no more (or a zombie nobody reaps).
func waitGone(pid int) bool {
	return eventually(func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return nil
		}
		return fmt.Errorf("pid %d runs", pid)
	}) == nil
}

// podOptions is CRI's pod config as the request's options.
func podOptions(t *testing.T, pc *runtime.PodSandboxConfig) *ptypes.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(pc)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// create and start the sandbox with pod config pc in network namespace
// netns ("" for none).
func (s *sbShim) run(pc *runtime.PodSandboxConfig, netns string) *sandboxAPI.StartSandboxResponse {
	s.t.Helper()
	if _, err := s.sandbox.CreateSandbox(s.ctx, &sandboxAPI.CreateSandboxRequest{
		SandboxID: s.id, BundlePath: s.bundle, Options: podOptions(s.t, pc), NetnsPath: netns,
	}); err != nil {
		s.t.Fatalf("create sandbox: %v", err)
	}
	r, err := s.sandbox.StartSandbox(s.ctx, &sandboxAPI.StartSandboxRequest{SandboxID: s.id})
	if err != nil {
		s.t.Fatalf("start sandbox: %v", err)
	}
	return r
}

func (s *sbShim) status() *sandboxAPI.SandboxStatusResponse {
	s.t.Helper()
	st, err := s.sandbox.SandboxStatus(s.ctx, &sandboxAPI.SandboxStatusRequest{SandboxID: s.id, Verbose: true})
	if err != nil {
		s.t.Fatalf("sandbox status: %v", err)
	}
	return st
}

// member is a container of the sandbox, created over the task API.
type member struct {
	id, bundle, out string
}

// memberOpts shape a member's spec.
type memberOpts struct {
	args []string
	// sharePID, shareIPC name the sandbox's namespaces, as CRI's POD
	// mode does; the network and UTS namespaces are always the pod's.
	sharePID, shareIPC bool
	mounts             []specs.Mount
	memoryLimit        int64
}

// addMember creates and starts a busybox container in the sandbox (pid is
// the sandbox's, from StartSandbox), its stdout and stderr in one file.
func (s *sbShim) addMember(pid uint32, o memberOpts) member {
	s.t.Helper()
	s.memberNo++
	m := member{id: fmt.Sprintf("%s-m%d", s.id, s.memberNo)}
	m.bundle = filepath.Join(s.t.TempDir(), m.id)
	m.out = filepath.Join(s.t.TempDir(), "out")
	if err := os.MkdirAll(filepath.Join(m.bundle, "rootfs"), 0o711); err != nil {
		s.t.Fatal(err)
	}
	mounts := s.writeSpec(m, pid, o)
	uri := "file://" + m.out
	if _, err := s.tasks.Create(s.ctx, &taskAPI.CreateTaskRequest{
		ID: m.id, Bundle: m.bundle, Rootfs: mount.ToProto(mounts), Stdout: uri, Stderr: uri,
	}); err != nil {
		s.t.Fatalf("create member %s: %v", m.id, err)
	}
	if _, err := s.tasks.Start(s.ctx, &taskAPI.StartRequest{ID: m.id}); err != nil {
		s.t.Fatalf("start member %s: %v", m.id, err)
	}
	s.t.Cleanup(func() { s.removeMember(m) })
	return m
}

// writeSpec writes the member's config.json, as CRI would for a container
// of the pod, and prepares its root (a new erofs snapshot of busybox).
func (s *sbShim) writeSpec(m member, pid uint32, o memberOpts) []mount.Mount {
	s.t.Helper()
	c, ctx := goClient(s.t)
	// A lease keeps containerd's garbage collector off the snapshot: no
	// container of containerd's refers to it.
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = done(ctx) })
	img, err := c.GetImage(ctx, busybox)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := img.Unpack(ctx, "erofs"); err != nil {
		s.t.Fatalf("unpack: %v", err)
	}
	diffs, err := img.RootFS(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	sn := c.SnapshotService("erofs")
	mounts, err := sn.Prepare(ctx, m.id, identity.ChainID(diffs).String())
	if err != nil {
		s.t.Fatalf("prepare snapshot: %v", err)
	}
	s.t.Cleanup(func() { _ = sn.Remove(ctx, m.id) })
	ns := func(typ specs.LinuxNamespaceType, name string) oci.SpecOpts {
		return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: typ, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, name)})
	}
	opts := []oci.SpecOpts{
		oci.WithDefaultPathEnv, oci.WithProcessCwd("/"), oci.WithProcessArgs(o.args...), oci.WithMounts(o.mounts),
		oci.WithAnnotations(map[string]string{
			"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": s.id,
		}),
		ns(specs.NetworkNamespace, "net"), ns(specs.UTSNamespace, "uts"),
	}
	if o.sharePID {
		opts = append(opts, ns(specs.PIDNamespace, "pid"))
	}
	if o.shareIPC {
		opts = append(opts, ns(specs.IPCNamespace, "ipc"))
	}
	if o.memoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(o.memoryLimit)))
	}
	spec, err := oci.GenerateSpec(ctx, c, &containers.Container{ID: m.id}, opts...)
	if err != nil {
		s.t.Fatalf("spec: %v", err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.bundle, "config.json"), b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return mounts
}

// removeMember kills and deletes a member, if it is still there.
func (s *sbShim) removeMember(m member) {
	ctx, cancel := context.WithTimeout(s.ctx, ctrTimeout)
	defer cancel()
	if _, err := s.tasks.Kill(ctx, &taskAPI.KillRequest{ID: m.id, Signal: uint32(syscall.SIGKILL), All: true}); err == nil {
		_, _ = s.tasks.Wait(ctx, &taskAPI.WaitRequest{ID: m.id})
	}
	_, _ = s.tasks.Delete(ctx, &taskAPI.DeleteRequest{ID: m.id})
}

// output is what the member wrote so far.
func (m member) output() string {
	b, _ := os.ReadFile(m.out)
	return string(b)
}

// waitOutput waits until the member's output holds want.
func (s *sbShim) waitOutput(m member, want string) {
	s.t.Helper()
	if err := eventually(func() error {
		if !strings.Contains(m.output(), want) {
			return fmt.Errorf("%s wrote %q", m.id, m.output())
		}
		return nil
	}); err != nil {
		s.t.Fatalf("waiting for %q: %v", want, err)
	}
}

// exec runs args in member m and returns its output and exit status.
func (s *sbShim) exec(m member, args ...string) (string, uint32) {
	s.t.Helper()
	s.memberNo++
	execID := fmt.Sprintf("x%d", s.memberNo)
	out := filepath.Join(s.t.TempDir(), "exec-out")
	spec, _ := json.Marshal(specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}})
	uri := "file://" + out
	if _, err := s.tasks.Exec(s.ctx, &taskAPI.ExecProcessRequest{
		ID: m.id, ExecID: execID, Stdout: uri, Stderr: uri, Spec: &ptypes.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec},
	}); err != nil {
		s.t.Fatalf("exec in %s: %v", m.id, err)
	}
	if _, err := s.tasks.Start(s.ctx, &taskAPI.StartRequest{ID: m.id, ExecID: execID}); err != nil {
		s.t.Fatalf("start exec in %s: %v", m.id, err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, ctrTimeout)
	defer cancel()
	w, err := s.tasks.Wait(ctx, &taskAPI.WaitRequest{ID: m.id, ExecID: execID})
	if err != nil {
		s.t.Fatalf("wait exec in %s: %v", m.id, err)
	}
	if _, err := s.tasks.Delete(ctx, &taskAPI.DeleteRequest{ID: m.id, ExecID: execID}); err != nil {
		s.t.Fatalf("delete exec in %s: %v", m.id, err)
	}
	b, _ := os.ReadFile(out)
	return string(b), w.GetExitStatus()
}

// mustExec runs args in m and fails unless they exit 0.
func (s *sbShim) mustExec(m member, args ...string) string {
	s.t.Helper()
	out, st := s.exec(m, args...)
	if st != 0 {
		s.t.Fatalf("%v in %s: exit %d, output %q", args, m.id, st, out)
	}
	return out
}

// taskStatus is a member's task state.
func (s *sbShim) taskStatus(id string) *taskAPI.StateResponse {
	s.t.Helper()
	st, err := s.tasks.State(s.ctx, &taskAPI.StateRequest{ID: id})
	if err != nil {
		s.t.Fatalf("state of %s: %v", id, err)
	}
	return st
}

// shimMounts are the mount points under dir in the shim's mount
// namespace.
func shimMounts(pid int, dir string) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}
