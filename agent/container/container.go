// Package container prepares a container inside the guest from the host's
// mount plan and OCI spec (root file system, spec mounts, devices, masked
// and read-only paths, hostname, cgroup) and keeps its processes.
package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/cgroup"
	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

// Config is what containers share.
type Config struct {
	Planner mount.Planner
	// CgroupParent holds one cgroup per container (/sys/fs/cgroup/msb);
	// "" runs containers without cgroups.
	CgroupParent string
	// NamespaceOf opens a namespace ("pid", "user") of another container's
	// init, for a container whose spec joins its PID namespace; nil refuses
	// such containers.
	NamespaceOf func(id, kind string) (*os.File, error)
	// NSEnter is the msb-nsenter helper; "" is process.DefaultNSEnter.
	NSEnter string
	// SetHostname is false in tests that must not rename their host.
	SetHostname bool
	// Sysctl is where linux.sysctl keys are written (/proc/sys).
	Sysctl string
}

// Container is one prepared container.
type Container struct {
	ID   string
	Root string

	spec   *specs.Spec
	plan   *mount.Mounted
	mounts []string // spec mounts, masks and read-only binds, in order
	ptmx   string   // the container's devpts ptmx, "" without one
	cgroup *cgroup.Group
	// pidNS: the container has a PID namespace of its own or joins
	// pidJoin's; its init makes its proc mounts (and the masks and
	// read-only binds under them) from inside it.
	pidNS   bool
	pidJoin string
	// userNS: the container has a user namespace with these mappings.
	userNS *mount.IDMap
	// mountNS: the container has a mount namespace of its own (its init's;
	// always with a user namespace), rooted at its root.
	mountNS  bool
	joinNS   func(id, kind string) (*os.File, error)
	nsenter  string
	nsMounts []process.NSMount
	nsProcs  []nsProc

	// gone ends with the container's deletion, and with it what waits on it.
	gone     context.Context
	markGone context.CancelFunc

	mu      sync.Mutex
	deleted bool
	paused  bool
	init    *process.Process
	execs   map[string]*process.Process
}

// Create mounts the root from plan and prepares it from the spec. On
// failure everything done so far is undone.
func Create(ctx context.Context, cfg Config, id string, plan []*api.Mount, specJSON []byte) (_ *Container, err error) {
	spec, err := parseSpec(specJSON)
	if err != nil {
		return nil, err
	}
	c := &Container{ID: id, spec: spec, execs: map[string]*process.Process{}, joinNS: cfg.NamespaceOf, nsenter: cfg.NSEnter}
	if c.pidNS, c.pidJoin, err = pidNamespace(spec); err != nil {
		return nil, err
	}
	if c.userNS, err = userNamespace(spec); err != nil {
		return nil, err
	}
	c.mountNS = c.userNS != nil || hasNamespace(spec, specs.MountNamespace)
	if c.pidJoin != "" && c.joinNS == nil {
		return nil, fmt.Errorf("joining container %s's PID namespace is not supported here: %w", c.pidJoin, errdefs.ErrNotImplemented)
	}
	c.gone, c.markGone = context.WithCancel(context.Background())
	if cfg.CgroupParent != "" {
		if c.cgroup, err = cgroup.Create(cfg.CgroupParent, id); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			c.teardown(ctx)
		}
	}()
	if err := c.setDevices(); err != nil {
		return nil, err
	}
	mounts, err := specMounts(spec.Mounts, c.cgroupPath())
	if err != nil {
		return nil, err
	}
	if c.plan, err = cfg.Planner.Run(ctx, plan); err != nil {
		return nil, err
	}
	c.Root = c.plan.Root()
	if err := c.asRoot(func() error { return c.prepare(ctx, cfg, mounts) }); err != nil {
		return nil, err
	}
	log.G(ctx).Infof("container %s created on %s", id, c.Root)
	return c, nil
}

// prepare runs the spec's steps on the mounted root, in runc's order.
func (c *Container) prepare(ctx context.Context, cfg Config, mounts []ociMount) error {
	s := c.spec
	c.applyResources(ctx)
	if s.Hostname != "" && cfg.SetHostname {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", s.Hostname, err)
		}
	}
	c.applySysctl(ctx, cfg.Sysctl)
	if err := c.mountAll(ctx, mounts, cfg.Planner.Disks); err != nil {
		return err
	}
	if !bindsDev(mounts) {
		var devs []specs.LinuxDevice
		if s.Linux != nil {
			devs = s.Linux.Devices
		}
		if err := c.setupDev(devs); err != nil {
			return err
		}
	}
	if s.Linux != nil {
		if err := c.maskPaths(s.Linux.MaskedPaths); err != nil {
			return err
		}
		if err := c.readonlyPaths(s.Linux.ReadonlyPaths); err != nil {
			return err
		}
	}
	if s.Root != nil && s.Root.Readonly {
		return remountReadonly(c.Root)
	}
	return nil
}

func (c *Container) cgroupPath() string {
	if c.cgroup == nil {
		return ""
	}
	return c.cgroup.Path
}

// applyResources writes the spec's limits; the VM's size is the real
// bound, so a limit the guest cannot set is logged, not fatal.
func (c *Container) applyResources(ctx context.Context) {
	if c.cgroup == nil || c.spec.Linux == nil {
		return
	}
	if err := c.cgroup.Apply(cgroup.Settings(c.spec.Linux.Resources)); err != nil {
		log.G(ctx).WithError(err).Warnf("container %s: some resource limits not applied", c.ID)
	}
}

// applySysctl writes linux.sysctl; the VM is the container's, so they are
// global. A key the guest kernel lacks is logged, not fatal.
func (c *Container) applySysctl(ctx context.Context, dir string) {
	if c.spec.Linux == nil || dir == "" {
		return
	}
	for k, v := range c.spec.Linux.Sysctl {
		p := filepath.Join(dir, strings.ReplaceAll(k, ".", "/"))
		if strings.Contains(k, "..") || !strings.HasPrefix(p, dir+"/") {
			log.G(ctx).Warnf("container %s: sysctl %q is invalid", c.ID, k)
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			log.G(ctx).WithError(err).Warnf("container %s: sysctl %s=%s", c.ID, k, v)
		}
	}
}

// Destroy kills every process left, unmounts the spec mounts and the root
// plan in reverse order, syncs and removes the cgroup.
func (c *Container) Destroy(ctx context.Context) error {
	c.mu.Lock()
	c.deleted = true
	procs := c.processes()
	c.mu.Unlock()
	c.markGone()
	c.killAll(procs)
	waitAll(procs, 5*time.Second)
	return c.teardown(ctx)
}

func (c *Container) teardown(ctx context.Context) error {
	var errs []error
	errs = append(errs, c.unmountAll())
	if c.plan != nil {
		errs = append(errs, c.plan.Unmount())
	}
	unix.Sync()
	if c.cgroup != nil {
		errs = append(errs, c.cgroup.Remove(2*time.Second))
	}
	err := errors.Join(errs...)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("container %s: teardown", c.ID)
	}
	return err
}

func waitAll(procs []*process.Process, timeout time.Duration) {
	deadline := time.After(timeout)
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-deadline:
			return
		}
	}
}
