package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

// Warm is a VM booted ahead of its use (the warm pool, package pool): its
// agent is up, but no channel was started: its hello (api.Hello) waits
// unread on the connection, so that the process the VM is handed over to
// (Adopt) starts the one channel the agent serves, as if it had booted the
// VM itself.
type Warm struct {
	v    *VM
	conn *net.UnixConn
}

// Boot starts a VM like Start, confined and in its host cgroup alike, and
// returns once its agent is up; on error nothing is left running.
func Boot(ctx context.Context, opts Options, spec Spec) (*Warm, error) {
	v, b, err := newVM(ctx, opts, spec)
	if err != nil {
		return nil, err
	}
	if err := v.launch(ctx, b); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	conn, err := v.awaitHello(ctx)
	if err != nil {
		v.proc.kill()
		v.removeFiles()
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return &Warm{v: v, conn: conn}, nil
}

// awaitHello dials the agent socket and waits until the agent's hello can
// be read, by the boot deadline, failing early when the VMM ends.
func (v *VM) awaitHello(ctx context.Context) (*net.UnixConn, error) {
	ctx, cancel := context.WithTimeout(ctx, v.opts.BootTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := waitFile(v.spec.AgentSocket, deadline, v.proc.done); err != nil {
		return nil, v.bootError(ctx, err)
	}
	c, err := dialAgent(v.spec.AgentSocket, deadline, v.proc.done)
	if err != nil {
		return nil, v.bootError(ctx, err)
	}
	conn := c.(*net.UnixConn)
	peeked := make(chan error, 1)
	go func() { peeked <- api.PeekHello(conn, deadline) }()
	select {
	case err = <-peeked:
	case <-v.proc.done:
		conn.Close()
		<-peeked
		err = errVMMEnded
	}
	if err != nil {
		conn.Close()
		return nil, v.bootError(ctx, err)
	}
	return conn, nil
}

// Pid is the VMM's process id.
func (w *Warm) Pid() int { return w.v.Pid() }

// Backend says which backend booted the VM.
func (w *Warm) Backend() string { return w.v.Backend }

// Done is closed once the VMM has ended; Err says why.
func (w *Warm) Done() <-chan struct{} { return w.v.Done() }

// Err says why the VMM ended, once Done is closed.
func (w *Warm) Err() error { return w.v.Err() }

// Kill ends the VM and removes what it held: its host cgroup, sockets and
// console FIFO.
func (w *Warm) Kill() {
	w.conn.Close()
	w.v.Kill()
}

// Handover stops copying the console and returns duplicates of what the
// VM's new owner needs (Adopt). Until Release the VM is still this
// process's: Kill ends it if the new owner does not take it.
func (w *Warm) Handover() (_ *Handover, retErr error) {
	w.v.console.pause()
	h := &Handover{Backend: w.v.Backend, Pids: w.v.proc.pids(), Cgroup: w.v.spec.Host.Cgroup}
	defer func() {
		if retErr != nil {
			h.Close()
		}
	}()
	for _, pid := range h.Pids {
		fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("pidfd of %d: %w", pid, err)
		}
		h.PidFDs = append(h.PidFDs, os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)))
	}
	var err error
	if h.Agent, err = w.conn.File(); err != nil {
		return nil, fmt.Errorf("agent connection: %w", err)
	}
	if h.Console, err = dupFile(w.v.console.r); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return h, nil
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// Release gives the VM up once its new owner adopted it: this process
// closes its ends of the agent connection and console, and removes the
// host cgroup the VM left (emptied by Adopt; one that is not is left
// alone: what runs there is no longer this process's to kill). It still
// reaps the VMM and its helpers, as their parent.
func (w *Warm) Release() error {
	w.conn.Close()
	w.v.console.closeFIFO()
	return w.v.cgroup.removeEmpty()
}

// removeEmpty removes the cgroup if nothing runs in it.
func (h *hostCgroup) removeEmpty() error {
	if h == nil {
		return nil
	}
	var err error
	for range 50 { // processes just moved out may take a moment to leave
		if err = h.delete(); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("remove host cgroup %s: %w", h.path, err)
}
