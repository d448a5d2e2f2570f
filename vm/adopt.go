package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Handover is what a VM's new owner needs of a VM another process booted
// (a warm VM: Boot). The files are the receiver's to close; Adopt takes
// them over.
type Handover struct {
	// Backend is the backend that booted the VM.
	Backend string
	// Pids are the VMM's process id and its helpers'; PidFDs the pidfds of
	// the same processes, in the same order. The booting process stays their
	// parent and reaps them: the new owner waits and kills through the
	// pidfds, which name exactly these processes whatever happens to the
	// pids.
	Pids   []int
	PidFDs []*os.File
	// Agent is the connection to the agent socket, the agent's hello
	// (api.Hello) still unread.
	Agent *os.File
	// Console is the read end of the FIFO the VMM writes the guest console
	// into, nothing of it unread lost: the new owner copies it on.
	Console *os.File
	// Cgroup is the host cgroup the VM runs in until Adopt moves it ("" for
	// none).
	Cgroup string
}

// Close closes the handover's files.
func (h *Handover) Close() {
	for _, f := range append(slices.Clone(h.PidFDs), h.Agent, h.Console) {
		if f != nil {
			f.Close()
		}
	}
}

// Adopt takes over a VM another process booted for spec: it moves the
// VMM and its helpers into the host cgroup of spec.Host (with the memory
// limit and CPU quota: the boot is over), copies the console on into
// spec.ConsoleLog and starts the agent channel on h.Agent. The returned VM
// is like one Start returned, but that its VMM's exit status is unknown
// (only its parent could wait for it). On error the VM is killed.
func Adopt(ctx context.Context, opts Options, spec Spec, h *Handover) (_ *VM, retErr error) {
	opts = opts.withDefaults()
	if err := spec.Validate(); err != nil {
		h.Close()
		return nil, fmt.Errorf("invalid VM spec: %w", err)
	}
	procs, err := adoptProcs(h)
	if err != nil {
		h.Close()
		return nil, err
	}
	v := &VM{Backend: h.Backend, spec: spec, opts: opts, files: newRunFiles(&spec)}
	v.proc = &vmm{name: "adopted VMM", adopted: procs, done: make(chan struct{}), logs: []string{v.files.vmmLog}}
	go v.proc.waitAdopted()
	v.console = adoptConsole(h.Console, v.files.console, spec.ConsoleLog)
	h.Console = nil
	go func() {
		<-v.proc.done
		v.console.vmmEnded()
	}()
	defer func() {
		if retErr != nil {
			v.proc.kill()
			v.removeFiles()
		}
	}()
	f := h.Agent
	h.Agent = nil
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("agent connection: %w", err)
	}
	if err := v.adoptCgroup(h.Cgroup); err != nil {
		conn.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.BootTimeout)
	defer cancel()
	if err := v.readHello(ctx, conn); err != nil {
		conn.Close()
		return nil, v.bootError(ctx, err)
	}
	if err := v.handshake(ctx, conn); err != nil {
		return nil, err
	}
	return v, nil
}

// adoptCgroup makes the VM's host cgroup and moves into it the VM's
// processes and whatever else runs in the cgroup it comes from.
func (v *VM) adoptCgroup(from string) error {
	var err error
	if v.cgroup, err = newHostCgroup(&v.spec, v.spec.hostResources(true)); err != nil {
		return err
	}
	pids := slices.Clone(v.proc.pids())
	if from != "" {
		in, err := cgroupProcs(from)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("processes of cgroup %s: %w", from, err)
		}
		for _, p := range in {
			if !slices.Contains(pids, p) {
				pids = append(pids, p)
			}
		}
	}
	return v.cgroup.add(pids...)
}

// cgroupProcs lists the processes of a cgroup (in any v1 hierarchy).
func cgroupProcs(path string) ([]int, error) {
	h, err := loadHostCgroup(path)
	if h == nil || err != nil {
		return nil, err
	}
	return h.procs()
}

// adoptedProcs are a VMM and its helpers known by pidfds.
type adoptedProcs struct {
	pids   []int
	pidfds []*os.File
}

func adoptProcs(h *Handover) (*adoptedProcs, error) {
	if len(h.Pids) == 0 || len(h.Pids) != len(h.PidFDs) {
		return nil, fmt.Errorf("adopt VM: %d pids and %d pidfds", len(h.Pids), len(h.PidFDs))
	}
	for i, f := range h.PidFDs {
		if got, err := pidfdPid(f); err != nil || got != h.Pids[i] {
			return nil, fmt.Errorf("adopt VM: pidfd %d names pid %d, not %d (%v)", i, got, h.Pids[i], err)
		}
		// Pollable, so waiting needs no thread of its own.
		_ = unix.SetNonblock(int(f.Fd()), true)
	}
	p := &adoptedProcs{pids: h.Pids, pidfds: h.PidFDs}
	h.PidFDs = nil
	return p, nil
}

// pidfdPid reads the pid a pidfd names from its fdinfo (-1 once the
// process is gone).
func pidfdPid(f *os.File) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		return 0, err
	}
	var pid int
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "Pid:\t%d", &pid); err == nil {
			return pid, nil
		}
	}
	return 0, errors.New("not a pidfd")
}

// signal sends sig to process i; one that ended already is fine.
func (a *adoptedProcs) signal(i int, sig syscall.Signal) {
	err := unix.PidfdSendSignal(int(a.pidfds[i].Fd()), sig, nil, 0)
	_ = err // ESRCH: ended already
}

// kill ends the VMM and its helpers. Each is the first process of PID
// namespaces of its own, or has no children (QEMU may not spawn): killing
// it ends everything it started.
func (a *adoptedProcs) kill() {
	for i := range a.pidfds {
		a.signal(i, syscall.SIGKILL)
	}
}

func (a *adoptedProcs) killHelpers() {
	for i := 1; i < len(a.pidfds); i++ {
		a.signal(i, syscall.SIGKILL)
	}
}

// waitAdopted waits for the adopted VMM to end, then ends its helpers
// (their parent reaps them) and closes done.
func (v *vmm) waitAdopted() {
	v.waitErr = waitPidfd(v.adopted.pidfds[0])
	if v.waitErr == nil {
		v.waitErr = errors.New("exit status unknown: the VMM was adopted")
	}
	v.adopted.killHelpers()
	for _, f := range v.adopted.pidfds[1:] {
		_ = waitPidfd(f)
	}
	close(v.done)
}

// waitPidfd returns once the process of a pidfd has ended (a pidfd reads
// ready then, whether or not its parent reaped it yet).
func waitPidfd(f *os.File) error {
	ended := func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if err := rc.Read(ended); err == nil {
		return nil
	}
	// Not pollable through the runtime: block a thread instead.
	for {
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
