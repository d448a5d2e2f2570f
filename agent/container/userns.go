package container

import (
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

// userNamespace reads the spec's user namespace: its mappings when it
// asks for one (always a new one: the host sends no path), nil otherwise.
func userNamespace(s *specs.Spec) (*mount.IDMap, error) {
	if s.Linux == nil {
		return nil, nil
	}
	l := s.Linux
	if !hasNamespace(s, specs.UserNamespace) {
		if len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 {
			return nil, fmt.Errorf("uidMappings and gidMappings without a user namespace: %w", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	}
	for _, ns := range l.Namespaces {
		if ns.Type == specs.UserNamespace && ns.Path != "" {
			return nil, fmt.Errorf("user namespace path %q: the guest makes a new one: %w", ns.Path, errdefs.ErrInvalidArgument)
		}
	}
	if len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0 {
		return nil, fmt.Errorf("a user namespace needs uidMappings and gidMappings: %w", errdefs.ErrInvalidArgument)
	}
	m := mount.IDMap{UIDs: sysProcIDMaps(l.UIDMappings), GIDs: sysProcIDMaps(l.GIDMappings)}
	if _, _, err := m.Root(); err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	return &m, nil
}

func sysProcIDMaps(in []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(in))
	for i, m := range in {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// asRoot runs fn with the fs ids of the container's root when it has a
// user namespace, so that the mount points, device nodes and files the
// agent makes in its root belong to it; with the agent's otherwise.
func (c *Container) asRoot(fn func() error) error {
	if c.userNS == nil {
		return fn()
	}
	uid, gid, err := c.userNS.Root()
	if err != nil {
		return err
	}
	return mount.AsUser(uid, gid, fn)
}

// nsOptions sets how p enters the container's mount and user namespaces.
// The init makes them: a new mount namespace whose root it pivots to the
// container's, and a new user namespace, unless the container shares
// another's PID namespace, whose user namespace owns that one and is
// joined with it (through msb-nsenter, which then unshares the mount
// namespace). An exec joins its init's user and mount namespaces. The
// returned files are for the caller to close once p started.
func (c *Container) nsOptions(p *process.Process, o *process.Options) ([]*os.File, error) {
	if p.ID != "" {
		return c.execNSOptions(o)
	}
	if c.mountNS {
		o.Enter = process.EnterPivot
	}
	switch {
	case c.userNS == nil:
		return nil, nil
	case c.pidJoin == "":
		o.UserNS = c.userNS
		return nil, nil
	}
	user, err := c.joinNS(c.pidJoin, "user")
	if err != nil {
		return nil, err
	}
	if err := notOwnUserNS(user); err != nil {
		user.Close()
		return nil, fmt.Errorf("container %s shares container %s's PID namespace: %w", c.ID, c.pidJoin, err)
	}
	o.JoinNS, o.UnshareNS = []*os.File{user}, unix.CLONE_NEWNS
	return o.JoinNS, nil
}

func (c *Container) execNSOptions(o *process.Options) ([]*os.File, error) {
	if !c.mountNS {
		return nil, nil
	}
	kinds := []string{"mnt"}
	if c.userNS != nil {
		kinds = []string{"user", "mnt"}
	}
	var files []*os.File
	for _, kind := range kinds {
		f, err := c.OpenNamespace(kind)
		if err != nil {
			closeFiles(files)
			return nil, err
		}
		files = append(files, f)
	}
	o.JoinNS, o.Enter = files, process.EnterJoined
	return files, nil
}

// notOwnUserNS refuses the agent's own user namespace: a container without
// one of its own cannot lend it.
func notOwnUserNS(f *os.File) error {
	var own, other unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &own); err != nil {
		return err
	}
	if err := unix.Fstat(int(f.Fd()), &other); err != nil {
		return err
	}
	if own.Ino == other.Ino && own.Dev == other.Dev {
		return fmt.Errorf("it has no user namespace of its own to share: %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
