// containerd-shim-msb-v1 is the containerd runtime io.containerd.msb.v1:
// every sandbox runs in its own microVM.
package main

import (
	"context"

	cshim "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/msb-runtime/msb/shim"
	_ "github.com/msb-runtime/msb/shim/task" // registers the task service
)

func main() {
	cshim.RunShim(context.Background(), shim.Manager{})
}
