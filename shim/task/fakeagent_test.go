package task

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// The hostile-agent harness runs the task service against a fake agent
// on the real channel (api.Serve: the same yamux and ttrpc framing), with
// a stand-in VMM, a sleeping process, so "the VM is gone" is a process
// the shim killed. The fake answers like msb-agent unless a test sets one
// of its misbehaviours; the test can also write raw frames on the guest's
// end of the channel.

// fakeAgent implements what the task service calls; any other call is a
// test bug and panics on the nil embedded interface.
type fakeAgent struct {
	api.AgentService

	// ignoreKill acknowledges signals and does nothing.
	ignoreKill bool
	// hangSignal and hangShutdown never answer those calls.
	hangSignal, hangShutdown bool
	// oomAnswer, when set, answers WaitOOM at once with what it returns.
	oomAnswer func(seen uint64) uint64

	mu        sync.Mutex
	procs     map[string]chan uint32 // exit status, by "container/exec" ("" for init)
	oomCalls  int
	deleted   chan struct{}
	stdio     []net.Conn
	stdin     chan net.Conn
	forgotten []string
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{procs: map[string]chan uint32{}, deleted: make(chan struct{})}
}

func (a *fakeAgent) Ping(context.Context, *api.PingRequest) (*api.PingResponse, error) {
	return &api.PingResponse{AgentVersion: "fake"}, nil
}

func (a *fakeAgent) StartProcess(_ context.Context, r *api.StartProcessRequest) (*api.StartProcessResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.procs[r.ContainerId+"/"+r.ExecId] = make(chan uint32, 1)
	return &api.StartProcessResponse{Pid: uint32(10 + len(a.procs))}, nil
}

func (a *fakeAgent) proc(cid, execID string) chan uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.procs[cid+"/"+execID]
}

func (a *fakeAgent) WaitProcess(ctx context.Context, r *api.ProcessRequest) (*api.WaitProcessResponse, error) {
	select {
	case st := <-a.proc(r.ContainerId, r.ExecId):
		return &api.WaitProcessResponse{ExitStatus: st}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exit makes a process of container c1 exit with status, as the guest
// would report it.
func (a *fakeAgent) exit(execID string, status uint32) { a.exitIn("c1", execID, status) }

func (a *fakeAgent) exitIn(cid, execID string, status uint32) {
	select {
	case a.proc(cid, execID) <- status:
	default:
	}
}

// DeleteProcess records the exec the host had the guest forget.
func (a *fakeAgent) DeleteProcess(_ context.Context, r *api.ProcessRequest) (*api.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forgotten = append(a.forgotten, r.ContainerId+"/"+r.ExecId)
	return &api.Empty{}, nil
}

func (a *fakeAgent) SignalProcess(ctx context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
	if a.hangSignal {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if !a.ignoreKill && r.Signal == uint32(syscall.SIGKILL) {
		a.exitIn(r.ContainerId, r.ExecId, 128+r.Signal)
	}
	return &api.Empty{}, nil
}

func (a *fakeAgent) DeleteContainer(context.Context, *api.DeleteContainerRequest) (*api.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.deleted:
	default:
		close(a.deleted)
	}
	return &api.Empty{}, nil
}

func (a *fakeAgent) Pause(context.Context, *api.ContainerRequest) (*api.Empty, error) {
	return &api.Empty{}, nil
}

func (a *fakeAgent) Resume(context.Context, *api.ContainerRequest) (*api.Empty, error) {
	return &api.Empty{}, nil
}

func (a *fakeAgent) Shutdown(ctx context.Context, _ *api.Empty) (*api.Empty, error) {
	if a.hangShutdown {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &api.Empty{}, nil
}

func (a *fakeAgent) WaitOOM(ctx context.Context, r *api.WaitOOMRequest) (*api.WaitOOMResponse, error) {
	a.mu.Lock()
	a.oomCalls++
	answer := a.oomAnswer
	a.mu.Unlock()
	if answer != nil {
		return &api.WaitOOMResponse{OomKills: answer(r.Seen)}, nil
	}
	select {
	case <-a.deleted:
		return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *fakeAgent) calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.oomCalls
}

// keepStdio holds the stdio streams the host opens, unread; the stdin
// streams also go to stdin, when a test made that channel.
func (a *fakeAgent) keepStdio(h api.StdioHeader, s net.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stdio = append(a.stdio, s)
	if h.FD == api.Stdin && a.stdin != nil {
		a.stdin <- s
	}
}

// guestConn is the guest's end of the channel. Once stall is closed it
// reads nothing more (until the test ends), as a guest that stops reading
// its port; raw writes frames of the test's own.
type guestConn struct {
	net.Conn
	stall, done chan struct{}
	once        sync.Once
}

func (g *guestConn) Read(p []byte) (int, error) {
	select {
	case <-g.stall:
		<-g.done
		return 0, net.ErrClosed
	default:
		return g.Conn.Read(p)
	}
}

func (g *guestConn) stopReading() { g.once.Do(func() { close(g.stall) }) }

func (g *guestConn) raw(b []byte) { g.Conn.Write(b) } //nolint:errcheck // the host may hang up first

// harness is a task service whose sandbox, a fake, runs a fake agent, as
// after its first container booted it.
type harness struct {
	t     *testing.T
	s     *service
	sb    *fakeSandbox
	agent *fakeAgent
	guest *guestConn
	vmm   *exec.Cmd
	pub   *recorder
}

// channelTimeout, stopTimeout and testKillGrace stand in for the
// defaults (30 s, 10 s, killGrace) so the tests are quick.
const (
	channelTimeout = time.Second
	stopTimeout    = time.Second
	testKillGrace  = 2 * time.Second
)

func newHarness(t *testing.T, a *fakeAgent, hostSndBuf int) *harness {
	t.Helper()
	h := newServiceHarness(t, a)
	h.sb.hostSndBuf = hostSndBuf
	if err := h.sb.Boot(h.ctx(), &sandbox.BootSpec{}); err != nil {
		t.Fatal(err)
	}
	h.s.sb = h.sb
	go h.s.watchVM(h.sb)
	h.guest, h.vmm = h.sb.guest, h.sb.vmm
	return h
}

// newServiceHarness is a task service whose Create boots a fake sandbox.
func newServiceHarness(t *testing.T, a *fakeAgent) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pub := &recorder{}
	sb := newFakeSandbox(t, a)
	s := &service{
		ctx:        namespaces.WithNamespace(ctx, "test"),
		publisher:  pub,
		events:     make(chan func(), 128),
		killGrace:  testKillGrace,
		newSandbox: func() sandbox.Sandbox { return sb },
		containers: map[string]*container{},
	}
	go s.forward()
	return &harness{t: t, s: s, sb: sb, agent: a, pub: pub}
}

func fileConn(t *testing.T, fd int) net.Conn {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run creates container id as Create would, after the VM booted, and
// starts its init process with io as its stdio.
func (h *harness) run(id string, io stdio) *container {
	h.t.Helper()
	return h.runCtx(h.ctx(), id, io)
}

// runCtx is run with the Start call's context.
func (h *harness) runCtx(ctx context.Context, id string, io stdio) *container {
	h.t.Helper()
	c := &container{id: id, bundle: h.t.TempDir(), watchDone: make(chan struct{}), execs: map[string]*process{}}
	c.init = h.s.newProcess(h.sb, c, "", &specs.Process{Args: []string{"sh"}}, io)
	h.s.mu.Lock()
	h.s.containers[id] = c
	h.s.mu.Unlock()
	h.s.watch(c, h.sb)
	if _, err := h.s.Start(ctx, &taskAPI.StartRequest{ID: id}); err != nil {
		h.t.Fatalf("start %s: %v", id, err)
	}
	return c
}

func (h *harness) ctx() context.Context {
	return namespaces.WithNamespace(context.Background(), "test")
}

// waitExit is what containerd's Wait returns, within what a user waits.
func (h *harness) waitExit(id, execID string) uint32 {
	h.t.Helper()
	st, err := h.wait(id, execID)
	if err != nil {
		h.t.Fatalf("wait %s/%s: %v", id, execID, err)
	}
	return st
}

func (h *harness) wait(id, execID string) (uint32, error) {
	ctx, cancel := context.WithTimeout(h.ctx(), 2*testKillGrace+stopTimeout)
	defer cancel()
	r, err := h.s.Wait(ctx, &taskAPI.WaitRequest{ID: id, ExecID: execID})
	return r.GetExitStatus(), err
}

// vmGone checks that the VM ended and its VMM process is no more.
func (h *harness) vmGone() {
	h.t.Helper()
	select {
	case <-h.sb.Done():
	case <-time.After(2*testKillGrace + stopTimeout):
		h.t.Fatal("the VM still runs")
	}
	if err := syscall.Kill(h.sb.vmm.Process.Pid, 0); err != syscall.ESRCH {
		h.t.Fatalf("the VMM process is still there: %v", err)
	}
}

// recorder is containerd's event publisher.
type recorder struct {
	mu     sync.Mutex
	topics []string
}

func (r *recorder) Publish(_ context.Context, topic string, _ events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.topics)
}

func (r *recorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, t := range r.topics {
		if t == topic {
			n++
		}
	}
	return n
}
