package network

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A warm VM (package pool) boots in a network namespace of its own, its
// holding namespace, with its tap there. The sandbox that claims it either
// uses that namespace as its own (a namespace the runtime makes: nerdctl's
// hook configures the VMM's) or moves the tap into the namespace it was
// given (a CRI pod's): a tap keeps working in another namespace, the VMM
// holds its file.

// MoveTap moves the VM's tap from the namespace held by from into the one
// pinned at to, and brings it up there.
func MoveTap(from *os.File, to string) error {
	target, err := netns.GetFromPath(to)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", to, err)
	}
	defer target.Close()
	err = inFD(from, func() error {
		l, err := netlink.LinkByName(Tap)
		if err != nil {
			return fmt.Errorf("tap %s: %w", Tap, err)
		}
		if err := netlink.LinkSetNsFd(l, int(target)); err != nil {
			return fmt.Errorf("move tap %s to %s: %w", Tap, to, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return in(to, func() error {
		l, err := netlink.LinkByName(Tap)
		if err != nil {
			return fmt.Errorf("tap %s in %s: %w", Tap, to, err)
		}
		return netlink.LinkSetUp(l)
	})
}

// Pin binds the namespace held by ns at path, an existing file, in this
// process's mount namespace: RemoveNamespace undoes it.
func Pin(ns *os.File, path string) error {
	src := fmt.Sprintf("/proc/self/fd/%d", ns.Fd())
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin network namespace at %s: %w", path, err)
	}
	return nil
}

// inFD runs fn inside the namespace held by ns, on a thread of its own.
func inFD(ns *os.File, fn func() error) error {
	return onNewThreadNS(func() error {
		if err := netns.Set(netns.NsHandle(ns.Fd())); err != nil {
			return fmt.Errorf("enter netns %s: %w", ns.Name(), err)
		}
		return fn()
	})
}
