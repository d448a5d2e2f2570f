package cgroup

import (
	"context"
	"fmt"
	"time"
)

// freezePoll bounds the wait between two looks at cgroup.events while a
// group freezes; freezing takes milliseconds unless a task is stuck in the
// kernel.
const freezePoll = 10 * time.Millisecond

// Freeze freezes every process in the group and below it and returns once
// the kernel says they are all frozen: cgroup.freeze reads back what was
// asked at once, only cgroup.events tells when it is done. If ctx ends
// first the group is thawed again, so no half-frozen container is left.
func (g *Group) Freeze(ctx context.Context) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	if err := m.Freeze(); err != nil {
		return fmt.Errorf("freeze cgroup %s: %w", g.Path, err)
	}
	if err := g.waitFrozen(ctx); err != nil {
		m.Thaw() //nolint:errcheck // the wait's error is the one to report
		return err
	}
	return nil
}

func (g *Group) waitFrozen(ctx context.Context) error {
	delay := time.Millisecond
	for {
		v, err := g.event("frozen")
		if err != nil {
			return err
		}
		if v == "1" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup %s did not freeze: %w", g.Path, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, freezePoll)
	}
}

// Thaw lets the group's processes run again.
func (g *Group) Thaw() error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	if err := m.Thaw(); err != nil {
		return fmt.Errorf("thaw cgroup %s: %w", g.Path, err)
	}
	return nil
}
