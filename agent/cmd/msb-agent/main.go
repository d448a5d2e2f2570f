// Command msb-agent is the guest's PID 1 (/init on the boot disk). Run as
// "msb-agent exec-init" it is the setup stage of a container process, and
// with MSB_AGENT_MODE=pause the holder of a pod's PID namespace.
package main

import (
	"fmt"
	"os"

	"github.com/msb-runtime/msb/agent/boot"
	"github.com/msb-runtime/msb/agent/pause"
	"github.com/msb-runtime/msb/agent/process"
	"github.com/msb-runtime/msb/agent/service"
)

func main() {
	if len(os.Args) == 2 && os.Args[0] == process.InitArgv0 && os.Args[1] == process.InitArg {
		process.RunInit()
	}
	if pause.Requested() {
		pause.Run()
	}
	// As PID 1, the kernel may pass command line words as arguments:
	// ignore them.
	if os.Getpid() != 1 && len(os.Args) > 1 {
		switch os.Args[1] {
		case "--version", "version":
			fmt.Println("msb-agent", service.Version)
			return
		}
	}
	boot.Run()
}
