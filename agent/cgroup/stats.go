package cgroup

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/cgroups/v3/cgroup2/stats"
)

// manager is the cgroups library's handle on the group. Load only records
// the path; it is split because the library wants the group relative to a
// mount point.
func (g *Group) manager() (*cgroup2.Manager, error) {
	m, err := cgroup2.Load("/"+filepath.Base(g.Path), cgroup2.WithMountpoint(filepath.Dir(g.Path)))
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", g.Path, err)
	}
	return m, nil
}

// Pids lists the processes in the group and in the groups a container
// made below it (with its own cgroup namespace it may).
func (g *Group) Pids() ([]int, error) {
	m, err := g.manager()
	if err != nil {
		return nil, err
	}
	procs, err := m.Procs(true)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", g.Path, err)
	}
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = int(p)
	}
	return pids, nil
}

// Stats reads the group's metrics. Files of controllers the guest lacks
// read as zero; a frozen group reads like any other.
func (g *Group) Stats() (*stats.Metrics, error) {
	m, err := g.manager()
	if err != nil {
		return nil, err
	}
	st, err := m.Stat()
	if err != nil {
		return nil, fmt.Errorf("stats of cgroup %s: %w", g.Path, err)
	}
	return st, nil
}
