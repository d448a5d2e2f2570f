// Package plugin registers the shim's ttrpc services with containerd's
// shim framework: the task API and the sandbox API, on one connection and
// one sandbox.
package plugin

import (
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"

	"github.com/msb-runtime/msb/shim/mountns"
	"github.com/msb-runtime/msb/shim/sandboxapi"
	"github.com/msb-runtime/msb/shim/task"
)

func init() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			if err := mountns.Setup(); err != nil {
				return nil, err
			}
			sd := ss.(shutdown.Service)
			tasks := task.New(ic.Context, pp.(shim.Publisher), sd)
			return services{tasks, sandboxapi.New(ic.Context, tasks, sd)}, nil
		},
	})
}

// services are the task API and the sandbox API of one shim.
type services struct {
	tasks   task.Service
	sandbox *sandboxapi.Service
}

var _ shim.TTRPCService = services{}

func (s services) RegisterTTRPC(server *ttrpc.Server) error {
	if err := s.tasks.RegisterTTRPC(server); err != nil {
		return err
	}
	return s.sandbox.RegisterTTRPC(server)
}
