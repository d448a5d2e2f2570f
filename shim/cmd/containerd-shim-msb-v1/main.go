// containerd-shim-msb-v1 is the containerd runtime io.containerd.msb.v1:
// every sandbox runs in its own microVM.
package main

import (
	"context"

	cshim "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/msb-runtime/msb/shim"
	_ "github.com/msb-runtime/msb/shim/plugin" // registers the task and sandbox services
)

func main() {
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
