package network

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoDevice is FindDevice's answer in a VM started without a network
// device (the host gives one only to containers with a network).
var ErrNoDevice = fmt.Errorf("the VM has no network device: %w", errdefs.ErrFailedPrecondition)

// FindDevice returns the guest's one network device: the virtio-net
// device the host attached (eth0 to the guest kernel).
func FindDevice(h *netlink.Handle) (netlink.Link, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("network: list links: %w", err)
	}
	return pickDevice(links)
}

// pickDevice picks the one Ethernet hardware device among links. Virtual
// links (dummy, veth, bridge, sit0 and other tunnels a kernel may create
// on its own) have a link kind and are not "device"; lo is not Ethernet.
// The name is not relied on: the guest kernel may not call it eth0.
func pickDevice(links []netlink.Link) (netlink.Link, error) {
	var found []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "device" && a.EncapType == "ether" && a.Flags&net.FlagLoopback == 0 {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return nil, ErrNoDevice
	case 1:
		return found[0], nil
	default:
		names := make([]string, len(found))
		for i, l := range found {
			names[i] = l.Attrs().Name
		}
		// Which one the host meant cannot be told; guessing could cut
		// the VM off.
		return nil, fmt.Errorf("the VM has %d network devices (%s), msb expects one: %w",
			len(found), strings.Join(names, ", "), errdefs.ErrFailedPrecondition)
	}
}

// loopbackUp brings lo up unless it is: boot does it, but a container
// sharing the VM's network must find it up whatever happened there.
func loopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("network: find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("network: set lo up: %w", err)
	}
	return nil
}

// setLink gives the (down) link cfg's MAC and MTU.
func setLink(h *netlink.Handle, link netlink.Link, cfg *Config) error {
	a := link.Attrs()
	if err := h.LinkSetHardwareAddr(link, cfg.MAC); err != nil {
		return fmt.Errorf("network: set %s mac %s: %w", a.Name, cfg.MAC, err)
	}
	if cfg.MTU == 0 || cfg.MTU == a.MTU {
		return nil
	}
	if err := h.LinkSetMTU(link, cfg.MTU); err != nil {
		// Parse checks the general bounds; the device's own (virtio-net
		// takes at most what the host's tap offers) only the kernel knows,
		// and says EINVAL beyond them.
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("network: mtu %d is beyond what %s takes: %w", cfg.MTU, a.Name, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("network: set %s mtu %d: %w", a.Name, cfg.MTU, err)
	}
	return nil
}
