package task

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
	"github.com/msb-runtime/msb/vm"
)

// fakeSandbox is a Sandbox whose VM is a stand-in: a sleeping process as
// the VMM, and a fake agent on the real channel (api.Serve: the same yamux
// and ttrpc framing), so "the VM is gone" is a process the shim killed. It
// records the calls the task service makes, in order, and fails those a
// test names.
type fakeSandbox struct {
	t          *testing.T
	agent      *fakeAgent
	hostSndBuf int

	mu      sync.Mutex
	calls   []string
	fail    map[string]error // by call: "boot c1", "join c2", "leave c2", "stop"
	boot    *sandbox.BootSpec
	members []string

	v        *vm.VM
	vmm      *exec.Cmd
	guest    *guestConn
	stopping atomic.Bool
}

var _ sandbox.Sandbox = (*fakeSandbox)(nil)

func newFakeSandbox(t *testing.T, a *fakeAgent) *fakeSandbox {
	return &fakeSandbox{t: t, agent: a, fail: map[string]error{}}
}

// call records a call and returns the error a test set for it.
func (f *fakeSandbox) call(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	return f.fail[name]
}

func (f *fakeSandbox) failOn(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[name] = err
}

func (f *fakeSandbox) history() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeSandbox) Boot(ctx context.Context, b *sandbox.BootSpec) error {
	name := "boot"
	if b.First != nil {
		name += " " + b.First.ID
	}
	if err := f.call(name); err != nil {
		return err
	}
	if err := f.attach(); err != nil {
		return err
	}
	f.mu.Lock()
	f.boot = b
	if b.First != nil {
		f.members = append(f.members, b.First.ID)
	}
	f.mu.Unlock()
	if b.BeforeNetwork != nil {
		return b.BeforeNetwork(ctx, f.Pid())
	}
	return nil
}

// attach starts the stand-in VMM and connects the host's channel to the
// fake agent.
func (f *fakeSandbox) attach() error {
	t := f.t
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if f.hostSndBuf > 0 {
		if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, f.hostSndBuf); err != nil {
			return err
		}
	}
	host, guest := fileConn(t, fds[0]), fileConn(t, fds[1])
	f.guest = &guestConn{Conn: guest, stall: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { close(f.guest.done) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go api.Serve(ctx, f.guest, f.agent, api.Handlers{Stdio: f.agent.keepStdio}) //nolint:errcheck // ends with the channel
	f.vmm = exec.Command("sleep", "infinity")
	v, err := vm.Attach(ctx, vm.Options{StopTimeout: stopTimeout, DieWithParent: true}, f.vmm, host, api.WithTimeout(channelTimeout))
	if err != nil {
		return err
	}
	t.Cleanup(v.Kill)
	f.v = v
	return nil
}

func (f *fakeSandbox) Join(_ context.Context, m *sandbox.Member) error {
	if err := f.call("join " + m.ID); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = append(f.members, m.ID)
	return nil
}

// Leave has the fake agent delete the container, as the real one does.
func (f *fakeSandbox) Leave(ctx context.Context, id string) error {
	err := f.call("leave " + id)
	f.mu.Lock()
	f.members = slices.DeleteFunc(f.members, func(m string) bool { return m == id })
	f.mu.Unlock()
	if !f.Ending() {
		if _, aerr := f.v.Agent.DeleteContainer(ctx, &api.DeleteContainerRequest{Id: id}); aerr != nil {
			return fmt.Errorf("delete %s in the fake: %w", id, aerr)
		}
	}
	return err
}

func (f *fakeSandbox) Stop(ctx context.Context) error {
	if f.stopping.Swap(true) {
		return nil
	}
	err := f.call("stop")
	if f.v != nil {
		if serr := f.v.Shutdown(ctx); serr != nil {
			f.t.Logf("fake VM shutdown: %v", serr)
		}
	}
	return err
}

func (f *fakeSandbox) Kill()                 { f.v.Kill() }
func (f *fakeSandbox) Agent() *api.Client    { return f.v.Agent }
func (f *fakeSandbox) Pid() uint32           { return uint32(f.v.Pid()) }
func (f *fakeSandbox) Done() <-chan struct{} { return f.v.Done() }
func (f *fakeSandbox) Err() error            { return f.v.Err() }

func (f *fakeSandbox) Ending() bool {
	select {
	case <-f.v.Done():
		return true
	case <-f.v.Agent.Done():
		return true
	default:
		return f.stopping.Load()
	}
}
