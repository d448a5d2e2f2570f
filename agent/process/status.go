package process

import (
	"time"

	"golang.org/x/sys/unix"
)

// ExitStatus encodes a wait status the way shells and containerd do: the
// exit code, or 128+signal for a process killed by a signal.
func ExitStatus(ws unix.WaitStatus) uint32 {
	switch {
	case ws.Exited():
		return uint32(ws.ExitStatus())
	case ws.Signaled():
		return 128 + uint32(ws.Signal())
	default:
		return 255
	}
}

// Exit is how and when a process ended.
type Exit struct {
	Status uint32
	At     time.Time
}
