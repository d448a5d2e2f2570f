package task

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
)

// publish sends an event to containerd without blocking the caller's RPC
// on containerd's answer.
func (s *service) publish(ctx context.Context, topic string, event any) {
	ns, _ := namespaces.Namespace(ctx)
	ctx = namespaces.WithNamespace(context.WithoutCancel(s.ctx), ns)
	s.events <- func() {
		if err := s.publisher.Publish(ctx, topic, event); err != nil {
			log.G(ctx).WithError(err).WithField("topic", topic).Warn("publish event")
		}
	}
}

// forward publishes events in order, one at a time.
func (s *service) forward() {
	for send := range s.events {
		send()
	}
}
