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
	"github.com/msb-runtime/msb/shim/sandbox"
)

// The agent answers WaitOOM only once the container's OOM kill count
// exceeds what the host has seen, but the guest is not trusted to: an
// answer that brings nothing new (an error, or a count already seen)
// spaces the next call out exponentially, and a new count is published
// at most once per oomEventInterval, the kills in between counted into
// the next event. Neither a guest that answers at once nor a storm of
// kills makes the shim spin or floods containerd with events.
const (
	oomBackoffMin    = 100 * time.Millisecond
	oomBackoffMax    = 30 * time.Second
	oomEventInterval = time.Second
)

// watchOOM publishes a TaskOOM event each time the guest kernel's OOM
// killer strikes in the container, until ctx ends (Delete), the VM ends,
// or the agent says the container or the memory controller is gone.
func (s *service) watchOOM(ctx context.Context, sb sandbox.Sandbox, id string) {
	var seen uint64
	var backoff time.Duration
	for ctx.Err() == nil && !sb.Ending() {
		resp, err := sb.Agent().WaitOOM(ctx, &api.WaitOOMRequest{Id: id, Seen: seen})
		pause := oomEventInterval
		switch n := resp.GetOomKills(); {
		case err != nil:
			err = errgrpc.ToNative(err)
			if errdefs.IsNotFound(err) || errdefs.IsNotImplemented(err) {
				log.G(ctx).WithError(err).Debugf("no OOM events for %s", id)
				return
			}
			backoff = nextBackoff(backoff)
			pause = backoff
		case n > seen:
			seen, backoff = n, 0
			s.publish(ctx, runtime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: id})
		default:
			backoff = nextBackoff(backoff)
			pause = backoff
		}
		select {
		case <-ctx.Done():
		case <-sb.Done():
		case <-time.After(pause):
		}
	}
}

func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, oomBackoffMin), oomBackoffMax)
}
