package task

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/network"
)

// connectNetwork runs the host hooks that set up the network (with the
// VMM's pid, whose namespace the NIC lives in), then hands what CNI
// configured there to the guest. A container whose namespace got no
// interface (nerdctl --net none) keeps a network namespace of its own in
// the guest, with only loopback.
func connectNetwork(ctx context.Context, sb *sandbox, c *container, b *bootSpec) error {
	if h := c.hooks; h != nil {
		st := ociState(c, specs.StateCreating, uint32(sb.vm.Pid()))
		if err := runHooks(ctx, "prestart", h.Prestart, st); err != nil { //nolint:staticcheck // Prestart is still run
			return err
		}
		if err := runHooks(ctx, "createRuntime", h.CreateRuntime, st); err != nil {
			return err
		}
	}
	if sb.netns == "" {
		return nil
	}
	cfg, err := network.Mirror(sb.netns)
	if err != nil || cfg == nil {
		return err
	}
	req := &api.ConfigureNetworkRequest{Mac: cfg.MAC, Mtu: uint32(cfg.MTU), Addresses: cfg.Addresses}
	for _, r := range cfg.Routes {
		req.Routes = append(req.Routes, &api.Route{Dst: r.Dst, Gw: r.Gw})
	}
	actx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	if _, err := sb.vm.Agent.ConfigureNetwork(actx, req); err != nil {
		return fmt.Errorf("configure the VM's network: %w", errgrpc.ToNative(err))
	}
	log.G(ctx).WithField("addresses", cfg.Addresses).Info("VM network configured")
	shareVMNetwork(b.guest.Spec)
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
