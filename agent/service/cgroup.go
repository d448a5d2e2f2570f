package service

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/container"
)

// The calls on a container's cgroup: its processes, metrics, freezer,
// limits and OOM kills.

// Pids lists every process of the container.
func (s *Service) Pids(ctx context.Context, r *api.ContainerRequest) (*api.PidsResponse, error) {
	c, err := s.container(r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	pids, err := c.Pids()
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.PidsResponse{Processes: processInfos(pids)}, nil
}

func processInfos(pids []container.PidInfo) []*api.ProcessInfo {
	infos := make([]*api.ProcessInfo, len(pids))
	for i, p := range pids {
		infos[i] = &api.ProcessInfo{Pid: uint32(p.Pid), ExecId: p.ExecID}
	}
	return infos
}

// Stats returns the container's cgroup metrics, encoded as the host's
// containerd expects them.
func (s *Service) Stats(ctx context.Context, r *api.ContainerRequest) (*api.StatsResponse, error) {
	c, err := s.container(r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	m, err := c.Stats()
	if err != nil {
		return nil, toStatus(err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, toStatus(fmt.Errorf("encode stats of container %s: %w", c.ID, err))
	}
	return &api.StatsResponse{Metrics: b}, nil
}

// Pause freezes the container and returns once it is frozen.
func (s *Service) Pause(ctx context.Context, r *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.container(r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.Pause(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

// Resume thaws the container.
func (s *Service) Resume(ctx context.Context, r *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.container(r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.Resume(); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

// UpdateContainer applies new resource limits to the container.
func (s *Service) UpdateContainer(ctx context.Context, r *api.UpdateContainerRequest) (*api.Empty, error) {
	res, err := parseResources(r.GetResources())
	if err != nil {
		return nil, toStatus(err)
	}
	c, err := s.container(r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := c.Update(res); err != nil {
		return nil, toStatus(err)
	}
	return &api.Empty{}, nil
}

func parseResources(b []byte) (*specs.LinuxResources, error) {
	var r specs.LinuxResources
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &r, nil
}

// WaitOOM returns once the container has had more OOM kills than the host
// has seen.
func (s *Service) WaitOOM(ctx context.Context, r *api.WaitOOMRequest) (*api.WaitOOMResponse, error) {
	c, err := s.container(r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	n, err := c.WaitOOM(ctx, r.GetSeen())
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.WaitOOMResponse{OomKills: n}, nil
}
