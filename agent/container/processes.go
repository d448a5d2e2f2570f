package container

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

func closeAll(streams map[int]net.Conn) {
	for _, s := range streams {
		s.Close()
	}
}

func (c *Container) processes() []*process.Process {
	var ps []*process.Process
	if c.init != nil {
		ps = append(ps, c.init)
	}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}

// AddProcess registers a process before it starts, reserving its id. An
// exec needs a running init process (they share its PID-namespace-like
// life). The id of an exec that has exited may be reused: the new process
// replaces the old record.
func (c *Container) AddProcess(execID string) (*process.Process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return nil, fmt.Errorf("container %s is being deleted: %w", c.ID, errdefs.ErrNotFound)
	}
	if c.paused { // it would hang, frozen before its exec
		return nil, fmt.Errorf("container %s is paused: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if execID == "" {
		if c.init != nil {
			return nil, fmt.Errorf("container %s init process already exists: %w", c.ID, errdefs.ErrAlreadyExists)
		}
		c.init = process.New("")
		return c.init, nil
	}
	if c.init == nil || c.init.State() != process.Running {
		return nil, fmt.Errorf("container %s init process is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if old := c.execs[execID]; old != nil {
		if st := old.State(); st == process.Created || st == process.Running {
			return nil, fmt.Errorf("exec %q is %s in container %s: %w", execID, st, c.ID, errdefs.ErrAlreadyExists)
		}
	}
	p := process.New(execID)
	c.execs[execID] = p
	return p, nil
}

// StartProcess starts a registered process in the container; one that
// fails to start is forgotten (its id becomes free again).
func (c *Container) StartProcess(p *process.Process, spec *specs.Process, streams map[int]net.Conn) error {
	o := process.Options{
		Root:     c.Root,
		Spec:     spec,
		CgroupNS: hasNamespace(c.spec, specs.CgroupNamespace),
		Seccomp:  seccompOf(c.spec),
		Streams:  streams,
		Ptmx:     c.ptmx,
		NSEnter:  c.nsenter,
	}
	if p.ID == "" {
		o.OnExit = func(process.Exit) { c.killRest() }
		o.NSMounts = c.nsMounts
		o.NewPIDNamespace = c.pidNS && c.pidJoin == ""
	}
	files, err := c.nsOptions(p, &o)
	if err != nil {
		closeAll(streams)
		c.Forget(p)
		return err
	}
	defer closeFiles(files)
	if ns, err := c.joinedPIDNamespace(p); err != nil {
		closeAll(streams)
		c.Forget(p)
		return err
	} else if ns != nil {
		defer ns.Close()
		o.PIDNamespace = ns
	}
	if c.cgroup != nil {
		f, err := c.cgroup.Open()
		if err != nil {
			closeAll(streams)
			c.Forget(p)
			return err
		}
		defer f.Close()
		o.Cgroup = f
	}
	if err := p.Start(o); err != nil {
		if p.ID == "" && c.pidNS {
			c.undoNSMounts()
		}
		c.Forget(p)
		return err
	}
	return nil
}

// joinedPIDNamespace opens the PID namespace p is born in when that is not
// the agent's nor a new one: an exec joins its container's init's, the init
// of a container that shares another's joins that one's init's.
func (c *Container) joinedPIDNamespace(p *process.Process) (*os.File, error) {
	switch {
	case !c.pidNS:
	case p.ID != "":
		return c.OpenNamespace("pid")
	case c.pidJoin != "":
		return c.joinNS(c.pidJoin, "pid")
	}
	return nil, nil
}

// OpenNamespace opens the namespace of kind ("pid", "user", "mnt") of the
// container's running init.
func (c *Container) OpenNamespace(kind string) (*os.File, error) {
	c.mu.Lock()
	initP := c.init
	c.mu.Unlock()
	if initP == nil {
		return nil, fmt.Errorf("container %s init process is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	return initP.OpenNamespace(kind)
}

// undoNSMounts unmounts what an init that failed to start may have
// mounted in its PID namespace (a new init mounts them again).
func (c *Container) undoNSMounts() {
	for i := len(c.nsMounts) - 1; i >= 0; i-- {
		mount.Unmount(c.nsMounts[i].Target) //nolint:errcheck // teardown retries
	}
}

// Forget drops a registered process that will not start.
func (c *Container) Forget(p *process.Process) {
	p.Abort(fmt.Errorf("%w: start abandoned", errdefs.ErrFailedPrecondition))
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.ID == "" {
		if c.init == p {
			c.init = nil
		}
		return
	}
	if c.execs[p.ID] == p {
		delete(c.execs, p.ID)
	}
}

// DeleteProcess forgets an exec that has exited or never started: the host
// deletes it when containerd does, so the record lives exactly as long as
// containerd's.
func (c *Container) DeleteProcess(execID string) error {
	if execID == "" {
		return fmt.Errorf("the init process of %s goes with its container: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return fmt.Errorf("exec %q of container %s: %w", execID, c.ID, errdefs.ErrNotFound)
	}
	if err := p.Delete(); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	delete(c.execs, execID)
	return nil
}

// Process finds a process by exec id ("" is the init process).
func (c *Container) Process(execID string) (*process.Process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.init
	if execID != "" {
		p = c.execs[execID]
	}
	if p == nil || p.State() == process.Deleted {
		return nil, fmt.Errorf("process %q of container %s: %w", execID, c.ID, errdefs.ErrNotFound)
	}
	return p, nil
}

// SignalAll signals every process of the container: through its cgroup
// (which catches children the agent did not start), or each known process
// when there is none.
func (c *Container) SignalAll(sig syscall.Signal) error {
	if c.cgroup != nil {
		return c.cgroup.Signal(sig)
	}
	c.mu.Lock()
	procs := c.processes()
	c.mu.Unlock()
	for _, p := range procs {
		if err := p.Signal(sig); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return err
		}
	}
	return nil
}

// killRest kills what is left when the init process exits, as the end of
// a PID namespace would, so that their pipes close.
func (c *Container) killRest() {
	c.SignalAll(unix.SIGKILL) //nolint:errcheck // best effort; Destroy retries
}

func (c *Container) killAll(procs []*process.Process) {
	if c.cgroup != nil {
		c.cgroup.Signal(unix.SIGKILL) //nolint:errcheck // Remove retries
		return
	}
	for _, p := range procs {
		p.Signal(unix.SIGKILL) //nolint:errcheck // stopped ones say so
	}
}
