package sandbox

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/journal"
	"github.com/msb-runtime/msb/shim/network"
)

// addNetwork makes the network namespace (unless CRI gave one) and the
// tap the VM's NIC uses, each recorded first.
func (s *VM) addNetwork(b *BootSpec) error {
	if !b.Net {
		return nil
	}
	ns := b.NetNS
	if ns == "" {
		ns = filepath.Join(s.runDir, "netns")
		if err := s.journal.Record(journal.NetNS(ns)); err != nil {
			return err
		}
		if err := network.NewNamespace(ns); err != nil {
			return err
		}
	}
	if err := s.journal.Record(journal.Tap(ns)); err != nil {
		return err
	}
	if err := network.AddTap(ns); err != nil {
		return err
	}
	s.netns = ns
	return nil
}

// handNetwork runs what configures the VMM's network namespace (the first
// container's host hooks, with the VMM's pid), then hands what CNI
// configured there to the guest. A namespace that got no interface
// (nerdctl --net none) leaves the guest with loopback only.
func (s *VM) handNetwork(ctx context.Context, b *BootSpec) error {
	if b.BeforeNetwork != nil {
		if err := b.BeforeNetwork(ctx, s.Pid()); err != nil {
			return err
		}
	}
	if s.netns == "" {
		return nil
	}
	cfg, err := network.Mirror(s.netns)
	if err != nil || cfg == nil {
		return err
	}
	req := &api.ConfigureNetworkRequest{Mac: cfg.MAC, Mtu: uint32(cfg.MTU), Addresses: cfg.Addresses}
	for _, r := range cfg.Routes {
		req.Routes = append(req.Routes, &api.Route{Dst: r.Dst, Gw: r.Gw})
	}
	actx, cancel := context.WithTimeout(ctx, AgentTimeout)
	defer cancel()
	if _, err := s.vm.Agent.ConfigureNetwork(actx, req); err != nil {
		return fmt.Errorf("configure the VM's network: %w", errgrpc.ToNative(err))
	}
	log.G(ctx).WithField("addresses", cfg.Addresses).Info("VM network configured")
	if b.First != nil {
		shareVMNetwork(b.First.Guest.Spec)
	}
	return nil
}

// shareVMNetwork takes the network namespace out of the guest spec: the
// container then uses the VM's, which holds the NIC.
func shareVMNetwork(s *specs.Spec) {
	if s.Linux == nil {
		return
	}
	kept := s.Linux.Namespaces[:0]
	for _, ns := range s.Linux.Namespaces {
		if ns.Type != specs.NetworkNamespace {
			kept = append(kept, ns)
		}
	}
	s.Linux.Namespaces = kept
}
