package network

import (
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
)

// addRoutes adds routes through link. Those without a gateway go first:
// the kernel refuses a gateway it cannot reach, and CNI results reach one
// outside the address's subnet (e.g. 169.254.1.1) by an on-link route that
// need not come first in the list.
func addRoutes(h *netlink.Handle, link netlink.Link, routes []Route) error {
	a := link.Attrs()
	ordered := slices.Clone(routes)
	slices.SortStableFunc(ordered, func(x, y Route) int {
		return boolOrder(x.Gw != nil) - boolOrder(y.Gw != nil)
	})
	for _, r := range ordered {
		nr := &netlink.Route{LinkIndex: a.Index, Dst: r.Dst, Gw: r.Gw, Scope: netlink.SCOPE_UNIVERSE}
		if r.Gw == nil {
			nr.Scope = netlink.SCOPE_LINK
		}
		// Replace, not add: the kernel's own route to the address's
		// subnet, or one a second call finds, is not an error.
		if err := h.RouteReplace(nr); err != nil {
			return fmt.Errorf("network: add route %s dev %s: %w", r, a.Name, err)
		}
	}
	return nil
}

func boolOrder(b bool) int {
	if b {
		return 1
	}
	return 0
}
