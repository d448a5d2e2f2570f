// containerd-shim-msb-v1 is the containerd runtime io.containerd.msb.v1:
// every sandbox runs in its own microVM.
package main

import (
	"context"
	"os"

	cshim "github.com/containerd/containerd/v2/pkg/shim"
	// otelttrpc: containerd's trace context reaches the task service's
	// calls, whose phases (package phase) become spans of that trace; the
	// otlp exporter sends them where containerd's environment says
	// (OTEL_EXPORTER_OTLP_ENDPOINT), as runc's shim built with shim_tracing.
	_ "github.com/containerd/containerd/v2/pkg/tracing/plugin"

	"github.com/msb-runtime/msb/shim"
	_ "github.com/msb-runtime/msb/shim/plugin" // registers the task and sandbox services
)

func main() {
	// The tracing plugin names the service "containerd" unless told, and
	// containerd's own environment, which the shim inherits, says so too.
	if n := os.Getenv("OTEL_SERVICE_NAME"); n == "" || n == "containerd" {
		os.Setenv("OTEL_SERVICE_NAME", "containerd-shim-msb-v1") //nolint:errcheck // a valid name
	}
	cshim.RunShim(context.Background(), shim.Manager{}, func(c *cshim.Config) {
		// pkg/shim's implicit reaper waits for any child on SIGCHLD, which
		// races with every exec.Cmd.Wait of the shim's (mkfs.ext4, the VMM,
		// virtiofsd, hooks: "waitid: no child processes"); runc's shim
		// routes its commands through that reaper, msb's waits for each
		// child itself. Not a subreaper either: no process of the shim's
		// double-forks, and orphans go to init, which reaps them.
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
