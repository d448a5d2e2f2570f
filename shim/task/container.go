package task

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// container is one container of the sandbox: its init process and the
// processes exec'd into it.
type container struct {
	id, bundle  string
	annotations map[string]string
	// hooks are the spec's host hooks (createRuntime, prestart,
	// poststart, poststop); nil when there are none.
	hooks *specs.Hooks
	init  *process
	// stopWatch ends the container's event watchers (OOM); watchDone is
	// closed once they have returned.
	stopWatch context.CancelFunc
	watchDone chan struct{}

	mu    sync.Mutex
	execs map[string]*process
}

// endWatch ends the event watchers once the container is gone from the
// guest. The agent answers their pending calls then (not found), so they
// are given a moment to return by themselves: a call cancelled here would
// be answered on a stream the ttrpc client has dropped, which it logs as
// an error.
func (c *container) endWatch() {
	select {
	case <-c.watchDone:
	case <-time.After(watchGrace):
	}
	c.stopWatch()
}

const watchGrace = time.Second

func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

func (c *container) addExec(p *process) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.execs[p.execID] != nil {
		return fmt.Errorf("exec %s in container %s: %w", p.execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.execs[p.execID] = p
	return nil
}

func (c *container) removeExec(execID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.execs, execID)
}

// execList returns the execs.
func (c *container) execList() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := make([]*process, 0, len(c.execs))
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}

// all returns the init process and every exec.
func (c *container) all() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []*process{c.init}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}
