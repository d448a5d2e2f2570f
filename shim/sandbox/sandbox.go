// Package sandbox is one VM and the containers in it, as the shim's
// services see it: it boots, containers join and leave, it stops, and an
// undo journal (shim/journal) records every host change so that `shim
// delete` cleans up after a shim that died. The task service and the
// sandbox service reach the VM only through the Sandbox interface, so a
// fake of it tests every task path without booting anything.
package sandbox

import (
	"context"
	"errors"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/vm"
)

// Sandbox is one VM and its member containers.
type Sandbox interface {
	// Boot starts the VM; with b.First, that container's root is the
	// VM's disks and it is created in the guest (containerd's pause path:
	// the pod's sandbox container, or a lone container).
	Boot(ctx context.Context, b *BootSpec) error
	// Join adds a container to the running VM: what it needs of the host
	// is exported into the VM's share, then the agent creates it.
	Join(ctx context.Context, m *Member) error
	// Leave removes a member: the agent deletes it (unmounting its root),
	// then its host side is undone. The VM keeps running.
	Leave(ctx context.Context, id string) error
	// Stop ends the VM cleanly (the agent syncs first) and undoes every
	// host change, members' included. A second Stop does nothing.
	Stop(ctx context.Context) error
	// Kill ends the VMM at once: for a guest that does not cooperate.
	Kill()
	// Agent is the guest agent's client; valid once Boot returned.
	Agent() *api.Client
	// Pid is the VMM's host pid (0 before Boot).
	Pid() uint32
	// Done is closed once the VM ended, for any reason; Err says why.
	Done() <-chan struct{}
	Err() error
	// Ending says whether the VM is gone or going: it ended, its channel
	// ended (the host gave up on the guest), or Stop began.
	Ending() bool
}

// ErrNotBooted is what calls on a sandbox whose VM is not running get.
var ErrNotBooted = errors.New("the sandbox has no running VM")

// BootSpec is what a VM boots with.
type BootSpec struct {
	// Bundle names the VM's run directory and holds its journal's link.
	Bundle string
	Config Config
	Size   oci.Size
	Host   vm.HostLimits
	// Net gives the VM a NIC, in NetNS, or when NetNS is "" in a
	// namespace of its own that host hooks configure (nerdctl).
	Net   bool
	NetNS string
	// Pod says containers will join: the VM gets a share even when its
	// first container exports nothing, and (with NetNS) CRI port-forward.
	Pod bool
	// First is the container that boots the VM, nil for a pod booted by
	// the sandbox API.
	First *Member
	// PodFiles, for a pod booted by the sandbox API, are made and
	// exported for its containers to bind.
	PodFiles *PodFiles
	// BeforeNetwork runs once the VMM runs, before the network it sits in
	// is handed to the guest: the first container's host hooks, with the
	// VMM's pid.
	BeforeNetwork func(ctx context.Context, pid uint32) error
}

// Member is a container of the VM, as the guest builds it.
type Member struct {
	ID, Bundle string
	Guest      *oci.Guest
	Plan       *rootfs.Plan
}

// exports are what the member needs in the VM's share: its binds and what
// of its root is not on disks.
func (m *Member) exports() []share.Export {
	return append(append([]share.Export{}, m.Guest.Exports...), m.Plan.Exports...)
}
