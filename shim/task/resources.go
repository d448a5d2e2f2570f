package task

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// maxPids bounds what the host accepts from the guest for one listing.
const maxPids = 1 << 16

// agentCall runs one control call on the running container's agent with
// the control timeout.
func (s *service) agentCall(ctx context.Context, id string, call func(context.Context, *api.Client) error) error {
	if _, err := s.container(id); err != nil {
		return err
	}
	sb, err := s.sandbox()
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	ctx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
	defer cancel()
	if err := call(ctx, sb.Agent()); err != nil {
		return errgrpc.ToGRPC(errgrpc.ToNative(err))
	}
	return nil
}

// Pids lists the container's processes as the guest numbers them.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	var resp *api.PidsResponse
	err := s.agentCall(ctx, r.ID, func(ctx context.Context, a *api.Client) (err error) {
		resp, err = a.Pids(ctx, &api.ContainerRequest{Id: r.ID})
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetProcesses()) > maxPids {
		return nil, errgrpc.ToGRPCf(errdefs.ErrUnknown, "the guest listed %d processes", len(resp.GetProcesses()))
	}
	out := &taskAPI.PidsResponse{}
	for _, gp := range resp.GetProcesses() {
		info := &task.ProcessInfo{Pid: gp.GetPid()}
		if id := gp.GetExecId(); id != "" && api.ValidID(id) == nil {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: id})
			if err != nil {
				return nil, fmt.Errorf("process %d details: %w", gp.GetPid(), err)
			}
			info.Info = a
		}
		out.Processes = append(out.Processes, info)
	}
	return out, nil
}

// Stats returns the container's cgroup v2 metrics, read in the guest.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	var resp *api.StatsResponse
	err := s.agentCall(ctx, r.ID, func(ctx context.Context, a *api.Client) (err error) {
		resp, err = a.Stats(ctx, &api.ContainerRequest{Id: r.ID})
		return err
	})
	if err != nil {
		return nil, err
	}
	// Decoded and encoded again: only a well-formed Metrics reaches
	// containerd.
	var m stats.Metrics
	if err := proto.Unmarshal(resp.GetMetrics(), &m); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrUnknown, "the guest sent unreadable metrics: %v", err)
	}
	data, err := typeurl.MarshalAnyToProto(&m)
	if err != nil {
		return nil, err
	}
	return &taskAPI.StatsResponse{Stats: data}, nil
}

// Pause freezes the container's processes in the guest.
func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	return s.setPaused(ctx, r.ID, true)
}

// Resume thaws them.
func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	return s.setPaused(ctx, r.ID, false)
}

func (s *service) setPaused(ctx context.Context, id string, pause bool) (*ptypes.Empty, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	want := task.Status_RUNNING
	if !pause {
		want = task.Status_PAUSED
	}
	if st := c.init.status(); st != want {
		return nil, errgrpc.ToGRPCf(errdefs.ErrFailedPrecondition, "pause/resume %s: it is %s", c.id, st)
	}
	err = s.agentCall(ctx, id, func(ctx context.Context, a *api.Client) error {
		var err error
		if pause {
			_, err = a.Pause(ctx, &api.ContainerRequest{Id: id})
		} else {
			_, err = a.Resume(ctx, &api.ContainerRequest{Id: id})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, p := range c.all() {
		p.setPaused(pause)
	}
	if pause {
		s.publish(ctx, runtime.TaskPausedEventTopic, &eventstypes.TaskPaused{ContainerID: id})
	} else {
		s.publish(ctx, runtime.TaskResumedEventTopic, &eventstypes.TaskResumed{ContainerID: id})
	}
	return empty, nil
}

// Update applies new resource limits to the container's cgroup in the
// guest. The VM keeps the size it booted with.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, errgrpc.ToGRPCf(errdefs.ErrInvalidArgument, "resources: %v", err)
	}
	b, err := json.Marshal(&res)
	if err != nil {
		return nil, err
	}
	err = s.agentCall(ctx, r.ID, func(ctx context.Context, a *api.Client) error {
		_, err := a.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: r.ID, Resources: b})
		return err
	})
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithField("container", r.ID).Debug("resources updated in the guest")
	return empty, nil
}
