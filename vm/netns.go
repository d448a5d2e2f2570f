package vm

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetNS runs fn on a thread switched into the VM's network namespace,
// so the processes fn starts (the VMM and its helpers) are born in it. A
// VM without a network runs fn as it is.
func inNetNS(n *Net, fn func() error) error {
	if n == nil {
		return fn()
	}
	target, err := netns.GetFromPath(n.NetNS)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", n.NetNS, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n.NetNS, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and ends with this goroutine: it must
		// never run other goroutines in the wrong namespace.
		return fmt.Errorf("leave network namespace %s: %w", n.NetNS, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
