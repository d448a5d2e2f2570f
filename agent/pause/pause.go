// Package pause is the guest's holder of a pod's shared PID namespace. A
// pod made through containerd's sandbox API has no pause container; when
// its containers share one PID namespace the shim has the agent start this
// as the namespace's first process (msb-agent itself, run with
// ModeEnv=ModePause): it reaps orphans and exits on SIGINT or SIGTERM, as
// Kubernetes' pause does. The kernel never passes ModeEnv to the real PID
// 1 unless the host's kernel arguments say so.
package pause

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// ModeEnv and ModePause select this mode of msb-agent.
const (
	ModeEnv   = "MSB_AGENT_MODE"
	ModePause = "pause"
)

// Requested says whether msb-agent was started as the pod's pause: PID 1
// of the pod's PID namespace, or a process of the VM's own when the pod
// asked for the node's.
func Requested() bool { return os.Getenv(ModeEnv) == ModePause }

// Run waits for a signal to end, reaping what the kernel hands it.
func Run() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGCHLD)
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
