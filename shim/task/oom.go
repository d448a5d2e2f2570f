package task

import (
	"context"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"

	"github.com/msb-runtime/msb/agent/api"
)

// oomRetry spaces out WaitOOM calls that failed for a passing reason.
const oomRetry = time.Second

// watchOOM publishes a TaskOOM event each time the guest kernel's OOM
// killer strikes in the container, until ctx ends (Delete) or the agent
// says the container or the memory controller is gone.
func (s *service) watchOOM(ctx context.Context, sb *sandbox, id string) {
	var seen uint64
	for ctx.Err() == nil && sb.alive() {
		resp, err := sb.vm.Agent.WaitOOM(ctx, &api.WaitOOMRequest{Id: id, Seen: seen})
		if err != nil {
			err = errgrpc.ToNative(err)
			if errdefs.IsNotFound(err) || errdefs.IsNotImplemented(err) {
				log.G(ctx).WithError(err).Debugf("no OOM events for %s", id)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(oomRetry):
			}
			continue
		}
		if n := resp.GetOomKills(); n > seen {
			seen = n
			s.publish(ctx, runtime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: id})
		}
	}
}
