package service

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/network"
)

// ConfigureNetwork configures the VM's network device as the host's CNI
// configured the container's interface.
func (s *Service) ConfigureNetwork(ctx context.Context, r *api.ConfigureNetworkRequest) (*api.Empty, error) {
	cfg, err := network.Parse(networkSpec(r))
	if err != nil {
		return nil, toStatus(fmt.Errorf("configure network: %w", err))
	}
	if err := s.cfg.Network.Configure(cfg); err != nil {
		log.G(ctx).WithError(err).Errorf("configure network: %s", cfg)
		return nil, toStatus(fmt.Errorf("configure network: %w", err))
	}
	log.G(ctx).Infof("network configured: %s", cfg)
	return &api.Empty{}, nil
}

func networkSpec(r *api.ConfigureNetworkRequest) network.Spec {
	s := network.Spec{MAC: r.GetMac(), MTU: r.GetMtu(), Addresses: r.GetAddresses()}
	for _, rt := range r.GetRoutes() {
		s.Routes = append(s.Routes, network.RouteSpec{Dst: rt.GetDst(), Gw: rt.GetGw()})
	}
	return s
}
