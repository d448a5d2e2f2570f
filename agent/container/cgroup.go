package container

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/cgroup"
	"github.com/msb-runtime/msb/agent/process"
)

// errDeleted ends the calls still waiting on a container when it is deleted.
var errDeleted = errors.New("container deleted")

// PidInfo is one process of the container.
type PidInfo struct {
	Pid int
	// ExecID is the exec the agent started the process as; "" for the init
	// process and for processes it did not start (their children).
	ExecID string
}

// Pids lists every process of the container: all in its cgroup (children
// included), or the agent's own without one.
func (c *Container) Pids() ([]PidInfo, error) {
	known := c.running()
	if c.cgroup == nil {
		pids := make([]int, 0, len(known))
		for pid := range known {
			pids = append(pids, pid)
		}
		return label(pids, known), nil
	}
	pids, err := c.cgroup.Pids()
	if err != nil {
		return nil, err
	}
	return label(pids, known), nil
}

// running maps the pids of the processes the agent started that still run
// to their exec ids. Only running ones: the pid of one that exited may have
// been reused.
func (c *Container) running() map[int]string {
	c.mu.Lock()
	procs := c.processes()
	c.mu.Unlock()
	known := map[int]string{}
	for _, p := range procs {
		if p.State() == process.Running {
			known[p.Pid()] = p.ID
		}
	}
	return known
}

// label pairs pids with the exec ids known for them, in pid order.
func label(pids []int, known map[int]string) []PidInfo {
	infos := make([]PidInfo, len(pids))
	for i, pid := range pids {
		infos[i] = PidInfo{Pid: pid, ExecID: known[pid]}
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Pid < infos[j].Pid })
	return infos
}

// group is the container's cgroup; the calls that need one fail as not
// implemented without it (the guest kernel has no cgroup2).
func (c *Container) group() (*cgroup.Group, error) {
	if c.cgroup == nil {
		return nil, fmt.Errorf("container %s has no cgroup: %w", c.ID, errdefs.ErrNotImplemented)
	}
	return c.cgroup, nil
}

// setDevices installs the container's device controller, built from the
// spec as runc builds it, in its new cgroup: before its init or any exec
// joins it. Without it a container with CAP_MKNOD opens the VM's disks and
// consoles. It cannot take it off: a program attached with
// BPF_F_ALLOW_MULTI is detached only by naming it, and only CAP_SYS_ADMIN
// gets a program by id; one it attaches to a group below its own runs in
// addition, and any program denying is a denial.
func (c *Container) setDevices() error {
	if c.cgroup == nil {
		return nil
	}
	var rules []specs.LinuxDeviceCgroup
	var nodes []specs.LinuxDevice
	if l := c.spec.Linux; l != nil {
		nodes = l.Devices
		if l.Resources != nil {
			rules = l.Resources.Devices
		}
	}
	dr, err := cgroup.DeviceRules(rules, nodes)
	if err == nil {
		err = c.cgroup.SetDevices(dr)
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	return nil
}

// Stats reads the metrics of the container's cgroup.
func (c *Container) Stats() (*stats.Metrics, error) {
	g, err := c.group()
	if err != nil {
		return nil, err
	}
	return g.Stats()
}

// Pause freezes the container. It is marked paused first, so that no
// process is added meanwhile: one would hang, frozen before its exec (a
// start already under way finishes once the container resumes).
func (c *Container) Pause(ctx context.Context) error {
	g, err := c.group()
	if err != nil {
		return err
	}
	if err := c.setPaused(true); err != nil {
		return err
	}
	if err := g.Freeze(ctx); err != nil {
		c.setPaused(false) //nolint:errcheck // Freeze thawed it again
		return err
	}
	return nil
}

// Resume thaws the container.
func (c *Container) Resume() error {
	g, err := c.group()
	if err != nil {
		return err
	}
	if err := g.Thaw(); err != nil {
		return err
	}
	return c.setPaused(false)
}

func (c *Container) setPaused(paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return fmt.Errorf("container %s is being deleted: %w", c.ID, errdefs.ErrNotFound)
	}
	c.paused = paused
	return nil
}

// Update applies new resource limits the way Create applies the spec's.
// Unlike at create, a limit that cannot be set is an error: the caller
// asked for exactly these.
func (c *Container) Update(r *specs.LinuxResources) error {
	g, err := c.group()
	if err != nil {
		return err
	}
	if err := g.Apply(cgroup.Settings(r)); err != nil {
		return fmt.Errorf("update resources of container %s: %w", c.ID, err)
	}
	return nil
}

// WaitOOM returns the container's OOM kill count once it exceeds seen; it
// fails with ctx's error when ctx ends and with ErrNotFound once the
// container is deleted.
func (c *Container) WaitOOM(ctx context.Context, seen uint64) (uint64, error) {
	g, err := c.group()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(c.gone, func() { cancel(errDeleted) })
	defer stop()
	n, err := g.WaitOOMKills(ctx, seen)
	if err != nil && errors.Is(context.Cause(ctx), errDeleted) {
		return 0, fmt.Errorf("container %s was deleted: %w", c.ID, errdefs.ErrNotFound)
	}
	return n, err
}
