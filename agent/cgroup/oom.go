package cgroup

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
)

// OOMKills reads the oom_kill count of the group's memory.events, which
// counts the groups below it too. Without the file (no memory controller in
// the guest) there is nothing to count: ErrNotImplemented.
func (g *Group) OOMKills() (uint64, error) {
	m, err := g.manager()
	if err != nil {
		return 0, err
	}
	st, err := m.StatFiltered(cgroup2.StatMemoryEvents)
	if err != nil {
		return 0, fmt.Errorf("read %s/memory.events: %w", g.Path, err)
	}
	if st.MemoryEvents == nil {
		return 0, fmt.Errorf("cgroup %s has no memory.events: %w", g.Path, errdefs.ErrNotImplemented)
	}
	return st.MemoryEvents.OomKill, nil
}

// WaitOOMKills returns the oom_kill count once it exceeds seen. It fails
// with ctx's error once ctx ends and with ErrNotFound if memory.events goes
// away.
func (g *Group) WaitOOMKills(ctx context.Context, seen uint64) (uint64, error) {
	w, err := watchFile(filepath.Join(g.Path, "memory.events"))
	if err != nil {
		return 0, err
	}
	defer w.Close()
	stop := context.AfterFunc(ctx, w.interrupt)
	defer stop()
	for {
		// Read only once the watch is set, so no change is missed between.
		n, err := g.OOMKills()
		if err != nil || n > seen {
			return n, err
		}
		if err := w.wait(); err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("wait for OOM kills in cgroup %s: %w", g.Path, ctx.Err())
			}
			return 0, err
		}
	}
}
