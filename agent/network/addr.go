package network

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// syncAddresses leaves link with exactly the addresses in want, besides
// those the kernel manages itself. Stale ones go first: deleting an IPv4
// primary address takes its secondaries with it, which may be wanted ones.
func syncAddresses(h *netlink.Handle, link netlink.Link, want []*net.IPNet) error {
	name := link.Attrs().Name
	have, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("network: list addresses of %s: %w", name, err)
	}
	for _, a := range have {
		if !stale(a, want) {
			continue
		}
		// EADDRNOTAVAIL: already gone with its primary.
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("network: delete address %s from %s: %w", a.IPNet, name, err)
		}
	}
	for _, ipn := range want {
		// Replace, not add: a second call finds the address there.
		a := &netlink.Addr{IPNet: &net.IPNet{IP: ipn.IP, Mask: ipn.Mask}}
		if ipn.IP.To4() == nil {
			// No duplicate address detection: the host's IPAM made the
			// address unique, and DAD would keep it tentative (unusable)
			// for a second or more after the container starts.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("network: add address %s to %s: %w", ipn, name, err)
		}
	}
	return nil
}

// stale says whether an address on the link is to be removed: it is not
// wanted and was set by hand, an earlier call's. The kernel's own stay:
// the IPv6 link-local address, and those SLAAC made (not permanent).
func stale(a netlink.Addr, want []*net.IPNet) bool {
	if a.IPNet == nil || a.Flags&unix.IFA_F_PERMANENT == 0 {
		return false
	}
	if a.IP.To4() == nil && a.IP.IsLinkLocalUnicast() {
		return false
	}
	ones, _ := a.Mask.Size()
	for _, w := range want {
		if wOnes, _ := w.Mask.Size(); w.IP.Equal(a.IP) && wOnes == ones {
			return false
		}
	}
	return true
}
