package pool

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/vm"
)

// idleShares is the pool's CPU weight (cgroup v1 shares; v2 weight 1): its
// VMs boot, and idle, on what the host's other work leaves. A claimed VM
// leaves the pool's cgroup, and with it this weight.
const idleShares = 2

// CgroupParent is the host cgroup the pool's VMs run below: parent, or
// msb.pool below this process's own cgroup.
func CgroupParent(parent string) (string, error) {
	if parent != "" {
		return filepath.Clean(parent), nil
	}
	own, err := vm.OwnCgroup()
	if err != nil {
		return "", err
	}
	return filepath.Join(own, "msb.pool"), nil
}

// MakeCgroupParent creates the pool's cgroup with the least CPU weight.
func MakeCgroupParent(path string) error {
	shares := uint64(idleShares)
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}}
	var err error
	if cgroups.Mode() == cgroups.Unified {
		_, err = cgroup2.NewManager("/sys/fs/cgroup", path, cgroup2.ToResources(res))
	} else {
		_, err = cgroup1.New(cgroup1.StaticPath(path), res)
	}
	if err != nil {
		return fmt.Errorf("warm pool: cgroup %s: %w", path, err)
	}
	return nil
}
