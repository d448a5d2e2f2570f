// Package network configures the guest's network: the one virtio-net
// device the host attaches to the VM, set up with the address, MAC and
// routes the host's CNI gave the container, so that traffic mirrored
// between the host interface and the guest's flows as if the container ran
// on the host. Containers without a network namespace share it.
package network

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
)

// Configurer applies a Config to the guest's network device. Its zero
// value works on the agent's own network namespace.
type Configurer struct {
	// Handle is the netlink handle to use; nil is the calling thread's
	// network namespace, the guest's own for the agent.
	Handle *netlink.Handle
	// FindLink returns the device to configure; nil is FindDevice. Tests
	// point it at a dummy link, which FindDevice rightly ignores.
	FindLink func(h *netlink.Handle) (netlink.Link, error)

	// mu serializes calls: two interleaved ones would leave a mix of both.
	mu sync.Mutex
}

func (c *Configurer) handle() *netlink.Handle {
	if c.Handle != nil {
		return c.Handle
	}
	// A zero Handle opens its sockets per request, as netlink's own
	// package-level functions do.
	return &netlink.Handle{}
}

// Configure sets the device down, gives it cfg's MAC and MTU, brings it
// up and gives it exactly cfg's addresses and routes; lo is brought up too.
// Calling it again with the same cfg succeeds and ends in the same state
// (the link goes down and up meanwhile); with another cfg, nothing of the
// first is left.
func (c *Configurer) Configure(cfg *Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.handle()
	find := c.FindLink
	if find == nil {
		find = FindDevice
	}
	link, err := find(h)
	if err != nil {
		return err
	}
	name := link.Attrs().Name
	if err := loopbackUp(h); err != nil {
		return err
	}
	// Down first: a virtio-net device without VIRTIO_NET_F_CTRL_MAC_ADDR
	// refuses a new MAC while up (EBUSY), and the IPv6 link-local address
	// is derived from the MAC when the link comes up. Going down also
	// flushes the routes through the device, so the ones added below are
	// all that remain of an earlier call.
	if err := h.LinkSetDown(link); err != nil {
		return fmt.Errorf("network: set %s down: %w", name, err)
	}
	up := false
	defer func() {
		// Best effort: a failure before the link is up again leaves it
		// up with what it had rather than cut off.
		if !up {
			_ = h.LinkSetUp(link)
		}
	}()
	if err := setLink(h, link, cfg); err != nil {
		return err
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("network: set %s up: %w", name, err)
	}
	up = true
	if err := syncAddresses(h, link, cfg.Addresses); err != nil {
		return err
	}
	return addRoutes(h, link, cfg.Routes)
}

// retryDump repeats a netlink dump the kernel interrupted (the table
// changed meanwhile, e.g. DAD finished), since its result may be
// inconsistent then.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 5 {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}
