package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/container"
	"github.com/msb-runtime/msb/agent/internal/roottest"
	"github.com/msb-runtime/msb/agent/mount"
)

// The whole API over the real channel (yamux + ttrpc on an in-memory
// pipe), with a container on an overlay of a busybox directory. Needs
// root, not a VM.

func busyboxImage(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	return roottest.BusyboxRoot(t, []string{"proc", "dev", "tmp"}, "sh", "cat", "sleep", "stty", "echo")
}

func cgroupParent(t *testing.T) string { return roottest.CgroupParent(t) }

type procIO struct {
	stdin          net.Conn
	stdout, stderr chan string
}

// openStdio opens the declared streams and collects the output ones.
func openStdio(t *testing.T, c *api.Client, ctr, exec string, fds ...int) *procIO {
	t.Helper()
	p := &procIO{stdout: make(chan string, 1), stderr: make(chan string, 1)}
	for _, fd := range fds {
		s, err := c.OpenStdio(api.StdioHeader{ContainerID: ctr, ExecID: exec, FD: fd})
		if err != nil {
			t.Fatal(err)
		}
		switch fd {
		case 0:
			p.stdin = s
		default:
			ch := p.stdout
			if fd == 2 {
				ch = p.stderr
			}
			go func() {
				b, _ := io.ReadAll(s)
				s.Close()
				ch <- string(b)
			}()
		}
	}
	return p
}

func procJSON(terminal bool, args ...string) []byte {
	p := specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/", Terminal: terminal}
	if terminal {
		p.ConsoleSize = &specs.Box{Width: 100, Height: 30}
	}
	b, _ := json.Marshal(p)
	return b
}

func TestRootAPIFlow(t *testing.T) {
	image := busyboxImage(t)
	dir := t.TempDir()
	var rebooted atomic.Bool
	parent := cgroupParent(t)
	c, _ := client(t, Config{
		Container:    container.Config{Planner: mount.Planner{}, CgroupParent: parent},
		StdioTimeout: 300 * time.Millisecond,
		Reboot:       func() { rebooted.Store(true) },
	})
	ctx := context.Background()
	spec, _ := json.Marshal(specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"newinstance", "ptmxmode=0666"}},
	}})
	rw, root := filepath.Join(dir, "rw"), filepath.Join(dir, "rootfs")
	create := &api.CreateContainerRequest{Id: "c1", Spec: spec, Rootfs: []*api.Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: rw, Options: []string{"X-containerd.mkdir.path=" + rw + "/upper:0755"}},
		{Type: "overlay", Source: "overlay", Target: root, Mkdirs: []string{rw + "/upper:0755", rw + "/work:0755"},
			Options: []string{"lowerdir=" + image, "upperdir=" + rw + "/upper", "workdir=" + rw + "/work"}},
	}}
	if _, err := c.CreateContainer(ctx, create); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteContainer(ctx, &api.DeleteContainerRequest{Id: "c1"}) })
	if _, err := c.CreateContainer(ctx, create); code(err) != codes.AlreadyExists {
		t.Fatalf("second create: %v", err)
	}
	start := func(exec string, terminal bool, fds []int, args ...string) (uint32, error) {
		r := &api.StartProcessRequest{ContainerId: "c1", ExecId: exec, Process: procJSON(terminal, args...)}
		for _, fd := range fds {
			*[]*bool{&r.Stdin, &r.Stdout, &r.Stderr}[fd] = true
		}
		resp, err := c.StartProcess(ctx, r)
		if err != nil {
			return 0, err
		}
		return resp.Pid, nil
	}
	wait := func(exec string) uint32 {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := c.WaitProcess(wctx, &api.ProcessRequest{ContainerId: "c1", ExecId: exec})
		if err != nil {
			t.Fatalf("wait %s: %v", exec, err)
		}
		if time.Since(time.Unix(0, r.ExitedAtUnixNano)) > time.Minute {
			t.Fatalf("exited_at %d", r.ExitedAtUnixNano)
		}
		return r.ExitStatus
	}

	// Exec before init: refused.
	if _, err := start("e0", false, nil, "true"); code(err) != codes.FailedPrecondition {
		t.Fatalf("exec before init: %v", err)
	}
	if pid, err := start("", false, nil, "sleep", "100"); err != nil || pid == 0 {
		t.Fatalf("init: %d %v", pid, err)
	}
	if _, err := start("", false, nil, "sleep", "100"); code(err) != codes.AlreadyExists {
		t.Fatalf("second init: %v", err)
	}

	if parent != "" {
		cgroupCalls(t, c, filepath.Join(parent, "c1"), start, wait)
	} else if _, err := c.Pause(ctx, &api.ContainerRequest{Id: "c1"}); code(err) != codes.Unimplemented {
		t.Fatalf("pause without cgroup: %v", err)
	}

	// Pipes: stdin in, stdout and stderr out, exit code.
	io1 := openStdio(t, c, "c1", "e1", 0, 1, 2)
	if _, err := start("e1", false, []int{0, 1, 2}, "sh", "-c", "cat; echo err >&2; exit 7"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(io1.stdin, "hello\n")
	if _, err := c.CloseStdin(ctx, &api.ProcessRequest{ContainerId: "c1", ExecId: "e1"}); err != nil {
		t.Fatal(err)
	}
	if st := wait("e1"); st != 7 {
		t.Fatalf("e1 status %d", st)
	}
	if out, errOut := <-io1.stdout, <-io1.stderr; out != "hello\n" || errOut != "err\n" {
		t.Fatalf("e1 stdout %q stderr %q", out, errOut)
	}
	if _, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c1", ExecId: "e1", Signal: 15}); code(err) != codes.NotFound || !strings.Contains(err.Error(), "process already finished") {
		t.Fatalf("signal after exit: %v", err)
	}

	// Exec failures are reported by StartProcess.
	openStdio(t, c, "c1", "e2", 1)
	if _, err := start("e2", false, []int{1}, "nosuchbin"); code(err) != codes.Unknown || !strings.Contains(err.Error(), `exec: "nosuchbin": executable file not found in $PATH`) {
		t.Fatalf("missing binary: %v", err)
	}
	if _, err := c.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c1", ExecId: "e2"}); code(err) != codes.NotFound {
		t.Fatalf("wait for a process that never started: %v", err)
	}
	// A declared stream that never comes.
	if _, err := start("e3", false, []int{1}, "true"); code(err) != codes.DeadlineExceeded {
		t.Fatalf("missing stream: %v", err)
	}

	// Terminal: the stdout stream carries the tty; the resize lands before
	// the input that lets stty run.
	io4 := openStdio(t, c, "c1", "e4", 0, 1)
	if _, err := start("e4", true, []int{0, 1}, "sh", "-c", "read x; stty size; echo got $x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResizePty(ctx, &api.ResizePtyRequest{ContainerId: "c1", ExecId: "e4", Width: 120, Height: 40}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(io4.stdin, "line\n")
	if st := wait("e4"); st != 0 {
		t.Fatalf("e4 status %d", st)
	}
	if out := strings.ReplaceAll(<-io4.stdout, "\r", ""); !strings.Contains(out, "40 120\n") || !strings.Contains(out, "got line\n") {
		t.Fatalf("tty output %q", out)
	}
	if _, err := c.ResizePty(ctx, &api.ResizePtyRequest{ContainerId: "c1", ExecId: "e1", Width: 1, Height: 1}); code(err) != codes.FailedPrecondition {
		t.Fatalf("resize without tty: %v", err)
	}

	// The exec id of an exited exec can be reused.
	openStdio(t, c, "c1", "e1", 1)
	if _, err := start("e1", false, []int{1}, "sleep", "100"); err != nil {
		t.Fatalf("reuse of e1: %v", err)
	}
	// An exec is forgotten when the host deletes it, not before, and not
	// while it runs.
	e1 := &api.ProcessRequest{ContainerId: "c1", ExecId: "e1"}
	if _, err := c.DeleteProcess(ctx, e1); code(err) != codes.FailedPrecondition {
		t.Fatalf("delete of a running exec: %v", err)
	}
	if _, err := c.DeleteProcess(ctx, &api.ProcessRequest{ContainerId: "c1"}); code(err) != codes.InvalidArgument {
		t.Fatalf("delete of the init process: %v", err)
	}
	// One that failed to start is forgotten at once.
	if _, err := c.DeleteProcess(ctx, &api.ProcessRequest{ContainerId: "c1", ExecId: "e3"}); code(err) != codes.NotFound {
		t.Fatalf("delete of an exec that never started: %v", err)
	}
	// Signalling all ends everything.
	if _, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c1", Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	if st := wait(""); st != 137 {
		t.Fatalf("init status %d", st)
	}
	if st := wait("e1"); st != 137 {
		t.Fatalf("e1 status %d", st)
	}
	if _, err := c.DeleteProcess(ctx, e1); err != nil {
		t.Fatalf("delete of an exited exec: %v", err)
	}
	if _, err := c.DeleteProcess(ctx, e1); code(err) != codes.NotFound {
		t.Fatalf("second delete of an exec: %v", err)
	}

	if _, err := c.DeleteContainer(ctx, &api.DeleteContainerRequest{Id: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteContainer(ctx, &api.DeleteContainerRequest{Id: "c1"}); code(err) != codes.NotFound {
		t.Fatalf("second delete: %v", err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), dir) {
		t.Fatal("mounts left after delete")
	}
	if _, err := c.Shutdown(ctx, &api.Empty{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if !rebooted.Load() {
		t.Fatal("shutdown did not end the VM")
	}
	if _, err := c.CreateContainer(ctx, create); code(err) != codes.FailedPrecondition {
		t.Fatalf("create after shutdown: %v", err)
	}
}

type startFunc func(exec string, terminal bool, fds []int, args ...string) (uint32, error)

// cgroupCalls runs the calls on the container's cgroup (path), whose init
// process runs.
func cgroupCalls(t *testing.T, c *api.Client, path string, start startFunc, wait func(string) uint32) {
	ctx := context.Background()
	req := &api.ContainerRequest{Id: "c1"}
	pid, err := start("p1", false, nil, "sleep", "100")
	if err != nil {
		t.Fatal(err)
	}
	pidsHave(t, c, pid, "p1")
	if _, err := c.Pause(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := start("p2", false, nil, "true"); code(err) != codes.FailedPrecondition {
		t.Fatalf("exec in a paused container: %v", err)
	}
	st, err := c.Stats(ctx, req)
	if err != nil {
		t.Fatalf("stats of a paused container: %v", err)
	}
	var m stats.Metrics
	if err := proto.Unmarshal(st.Metrics, &m); err != nil || m.CPU == nil {
		t.Fatalf("metrics %v: %v", &m, err)
	}
	pidsHave(t, c, pid, "p1")
	if _, err := c.Resume(ctx, req); err != nil {
		t.Fatal(err)
	}
	// cgroup.max.descendants is a core file: it is there without controllers.
	res := []byte(`{"unified":{"cgroup.max.descendants":"5"}}`)
	if _, err := c.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: "c1", Resources: res}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(path, "cgroup.max.descendants")); string(b) != "5\n" {
		t.Fatalf("cgroup.max.descendants = %q", b)
	}
	if _, err := c.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: "c1", Resources: []byte("[")}); code(err) != codes.InvalidArgument {
		t.Fatalf("update with bad resources: %v", err)
	}
	waitOOM(t, c, path)
	if _, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c1", ExecId: "p1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if st := wait("p1"); st != 137 {
		t.Fatalf("p1 status %d", st)
	}
}

// pidsHave checks that the container lists its init process and pid as
// exec.
func pidsHave(t *testing.T, c *api.Client, pid uint32, exec string) {
	t.Helper()
	r, err := c.Pids(context.Background(), &api.ContainerRequest{Id: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	var gotInit, gotExec bool
	for _, p := range r.Processes {
		gotInit = gotInit || p.ExecId == ""
		gotExec = gotExec || p.ExecId == exec && p.Pid == pid
	}
	if !gotInit || !gotExec {
		t.Fatalf("pids %v lack the init process or %s (%d)", r.Processes, exec, pid)
	}
}

// waitOOM: no OOM kill comes, so the wait lasts until its deadline; a
// guest without the memory controller says it cannot wait at all.
func waitOOM(t *testing.T, c *api.Client, path string) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.WaitOOM(ctx, &api.WaitOOMRequest{Id: "c1"})
	want := codes.DeadlineExceeded
	if _, serr := os.Stat(filepath.Join(path, "memory.events")); serr != nil {
		want = codes.Unimplemented
	}
	// The client may give up first, with its context's error.
	if code(err) != want && !(want == codes.DeadlineExceeded && errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("wait for OOM: %v, want %v", err, want)
	}
}
