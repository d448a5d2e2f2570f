package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

type pingAgent struct{ api.AgentService }

func (pingAgent) Ping(context.Context, *api.PingRequest) (*api.PingResponse, error) {
	return &api.PingResponse{AgentVersion: "fake"}, nil
}

// handoverFixture is what a process that booted a VM hands over, with a
// stand-in VMM (sleep) and a fake agent that says hello and serves Ping.
type handoverFixture struct {
	h       *Handover
	spec    Spec
	vmm     *exec.Cmd
	waited  chan error
	console *os.File // the VMM's write end of the console FIFO
}

func newHandover(t *testing.T) *handoverFixture {
	t.Helper()
	dir := t.TempDir()
	f := &handoverFixture{
		spec: Spec{VCPUs: 1, MemoryMiB: 256, BootDisk: "/boot.erofs",
			AgentSocket: filepath.Join(dir, "agent.sock"), ConsoleLog: filepath.Join(dir, "console.log")},
		vmm:    exec.Command("sleep", "infinity"),
		waited: make(chan error, 1),
	}
	if err := f.vmm.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.waited <- f.vmm.Wait() }()
	t.Cleanup(func() { _ = f.vmm.Process.Kill() })
	pidfd, err := unix.PidfdOpen(f.vmm.Process.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	guest, err := net.FileConn(os.NewFile(uintptr(fds[1]), "guest"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { guest.Close() })
	go func() {
		if api.WriteHello(guest) == nil {
			_ = api.Serve(context.Background(), guest, pingAgent{}, api.Handlers{})
		}
	}()
	fifo := newRunFiles(&f.spec).console
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.console, err = os.OpenFile(fifo, os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.console.Close() })
	if err := os.WriteFile(f.spec.ConsoleLog, []byte("boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.h = &Handover{Backend: "stand-in", Pids: []int{f.vmm.Process.Pid},
		PidFDs: []*os.File{os.NewFile(uintptr(pidfd), "pidfd")}, Agent: os.NewFile(uintptr(fds[0]), "agent"), Console: r}
	return f
}

// The new owner talks to the agent, copies the console on after what the
// booting process copied, and kills the VMM through its pidfd.
func TestAdopt(t *testing.T) {
	f := newHandover(t)
	// Written before the handover: waits in the FIFO.
	if _, err := f.console.WriteString("while handed over\n"); err != nil {
		t.Fatal(err)
	}
	v, err := Adopt(context.Background(), Options{BootTimeout: 10 * time.Second}, f.spec, f.h)
	if err != nil {
		t.Fatal(err)
	}
	if v.Pid() != f.vmm.Process.Pid {
		t.Errorf("pid %d, want the VMM's %d", v.Pid(), f.vmm.Process.Pid)
	}
	if _, err := v.Agent.Ping(context.Background(), &api.PingRequest{}); err != nil {
		t.Fatalf("ping the adopted VM's agent: %v", err)
	}
	if _, err := f.console.WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	want := "boot\nwhile handed over\nafter\n"
	if err := waitFor(func() error {
		b, _ := os.ReadFile(f.spec.ConsoleLog)
		if string(b) != want {
			return fmt.Errorf("console log %q, want %q", b, want)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	v.Kill()
	select {
	case err := <-f.waited:
		if ws, ok := errors.AsType[*exec.ExitError](err); !ok || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the VMM ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Kill did not end the adopted VMM")
	}
	<-v.Done()
	if err := v.Err(); err == nil || !strings.Contains(err.Error(), "adopted") {
		t.Errorf("Err: %v", err)
	}
}

// An adopted VMM that ends by itself ends the VM: Done closes.
func TestAdoptVMMEnds(t *testing.T) {
	f := newHandover(t)
	v, err := Adopt(context.Background(), Options{BootTimeout: 10 * time.Second}, f.spec, f.h)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Kill()
	_ = f.vmm.Process.Kill()
	select {
	case <-v.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the VMM ended")
	}
}

// A pidfd that names another process than the handover says is refused.
func TestAdoptWrongPidfd(t *testing.T) {
	f := newHandover(t)
	f.h.Pids = []int{os.Getpid()}
	if _, err := Adopt(context.Background(), Options{}, f.spec, f.h); err == nil || !strings.Contains(err.Error(), "names pid") {
		t.Fatalf("Adopt: %v, want the pidfd refused", err)
	}
}

func waitFor(f func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
