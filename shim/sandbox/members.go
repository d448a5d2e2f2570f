package sandbox

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/journal"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/vm/phase"
)

// mountHost mounts a root that lives on the host (the overlayfs
// snapshotter's) at the bundle's rootfs, recorded first.
func mountHost(ctx context.Context, j *journal.Journal, m *Member) error {
	if len(m.Plan.HostMounts) == 0 {
		return nil
	}
	if err := j.Record(journal.Mount(m.Plan.HostRootfs)); err != nil {
		return err
	}
	return m.Plan.MountHost(ctx)
}

// exportAll binds the member's exports into the VM's share, each mount
// point (and its directory) recorded before it is made.
func exportAll(j *journal.Journal, sd *sharedir.Dir, m *Member) error {
	exps := m.exports()
	if len(exps) == 0 {
		return nil
	}
	c := sd.Container(m.ID)
	if err := j.Record(journal.Dir(c.Dir())); err != nil {
		return err
	}
	for _, e := range exps {
		target := c.Target(e)
		if err := j.Record(journal.Dir(target), journal.Mount(target)); err != nil {
			return err
		}
		if err := c.Bind(e); err != nil {
			return err
		}
		if err := mirrorSubmounts(m, e, target); err != nil {
			return err
		}
	}
	return nil
}

// createInGuest has the agent build the container's root and prepare it.
func createInGuest(ctx context.Context, a *api.Client, m *Member) error {
	phase.From(ctx).Begin(ctx, phase.GuestMounts)
	spec, err := json.Marshal(m.Guest.Spec)
	if err != nil {
		return fmt.Errorf("encode guest spec: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, AgentTimeout)
	defer cancel()
	_, err = a.CreateContainer(ctx, &api.CreateContainerRequest{Id: m.ID, Rootfs: m.Plan.Mounts, Spec: spec})
	if err != nil {
		return fmt.Errorf("create container %s in the VM: %w", m.ID, errgrpc.ToNative(err))
	}
	return nil
}
