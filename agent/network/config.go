package network

import (
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
)

// Limits on a request: far above what a CNI result holds, low enough that
// a runaway host cannot make the guest churn through netlink.
const (
	MaxAddresses = 16
	MaxRoutes    = 64
)

// MTU bounds: 68 is the least IPv4 allows (RFC 791), 65535 the most a
// netdevice takes; IPv6 needs 1280 (RFC 8200), below which the kernel
// silently turns IPv6 off on the device.
const (
	minMTU     = 68
	maxMTU     = 65535
	minMTUIPv6 = 1280
)

// Spec is the configuration as the host sends it, unparsed.
type Spec struct {
	MAC       string
	MTU       uint32 // 0 leaves the device's MTU as it is
	Addresses []string
	Routes    []RouteSpec
}

// RouteSpec is a route as the host sends it.
type RouteSpec struct {
	Dst string // a CIDR; "" is the default route
	Gw  string // "" is an on-link route
}

// Config is a validated Spec, ready for Configure.
type Config struct {
	MAC net.HardwareAddr
	MTU int // 0 leaves the device's MTU as it is
	// Addresses keep the host address in IP (not the network), as
	// net.ParseCIDR's first result.
	Addresses []*net.IPNet
	Routes    []Route
}

// Route is a parsed route. Dst is never nil: the default route is
// 0.0.0.0/0 or ::/0, so every route has a family.
type Route struct {
	Dst *net.IPNet
	Gw  net.IP // nil for an on-link route
}

func (r Route) String() string {
	if r.Gw == nil {
		return r.Dst.String()
	}
	return fmt.Sprintf("%s via %s", r.Dst, r.Gw)
}

func (c *Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mac %s", c.MAC)
	if c.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", c.MTU)
	}
	fmt.Fprintf(&b, " addresses %v routes %v", c.Addresses, c.Routes)
	return b.String()
}

// invalid wraps a validation failure so that it maps to InvalidArgument.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// Parse validates a Spec before any of it touches the device, so that a bad
// request leaves the network as it was. Its errors are InvalidArgument.
func Parse(s Spec) (*Config, error) {
	mac, err := parseMAC(s.MAC)
	if err != nil {
		return nil, err
	}
	c := &Config{MAC: mac}
	if len(s.Addresses) > MaxAddresses {
		return nil, invalid("%d addresses, at most %d allowed", len(s.Addresses), MaxAddresses)
	}
	if len(s.Routes) > MaxRoutes {
		return nil, invalid("%d routes, at most %d allowed", len(s.Routes), MaxRoutes)
	}
	hasIPv6 := false
	seen := map[string]bool{}
	for _, a := range s.Addresses {
		ipn, err := parseAddress(a)
		if err != nil {
			return nil, err
		}
		// The kernel keys addresses by IP; the same IP twice (even with
		// another prefix) is a host bug better reported than half-applied.
		if seen[ipn.IP.String()] {
			return nil, invalid("address %q given twice", a)
		}
		seen[ipn.IP.String()] = true
		hasIPv6 = hasIPv6 || ipn.IP.To4() == nil
		c.Addresses = append(c.Addresses, ipn)
	}
	if s.MTU != 0 {
		if s.MTU < minMTU || s.MTU > maxMTU {
			return nil, invalid("mtu %d is outside %d-%d", s.MTU, minMTU, maxMTU)
		}
		if hasIPv6 && s.MTU < minMTUIPv6 {
			return nil, invalid("mtu %d is below the %d IPv6 needs", s.MTU, minMTUIPv6)
		}
		c.MTU = int(s.MTU)
	}
	dsts := map[string]bool{}
	for _, rs := range s.Routes {
		r, err := parseRoute(rs)
		if err != nil {
			return nil, err
		}
		// Two routes to one destination would silently replace each other.
		if dsts[r.Dst.String()] {
			return nil, invalid("two routes to %s", r.Dst)
		}
		dsts[r.Dst.String()] = true
		c.Routes = append(c.Routes, r)
	}
	return c, nil
}

// parseMAC accepts only a unicast Ethernet address: the kernel refuses a
// multicast or all-zero one (is_valid_ether_addr), and net.ParseMAC also
// takes the 8 and 20 byte forms an Ethernet device cannot have.
func parseMAC(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, invalid("mac is required")
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, invalid("mac %q: %v", s, err)
	}
	if len(mac) != 6 {
		return nil, invalid("mac %q is not a 6-byte Ethernet address", s)
	}
	if mac[0]&1 != 0 {
		return nil, invalid("mac %q is a multicast address", s)
	}
	if allZero(mac) {
		return nil, invalid("mac %q is all zeros", s)
	}
	return mac, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// parseAddress parses a CIDR whose IP is the address the guest takes.
func parseAddress(s string) (*net.IPNet, error) {
	ip, ipn, err := net.ParseCIDR(s)
	if err != nil {
		return nil, invalid("address %q: not a CIDR", s)
	}
	ip, err = normalize(ip, ipn.Mask, "address", s)
	if err != nil {
		return nil, err
	}
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
		return nil, invalid("address %q cannot be assigned to an interface", s)
	}
	return &net.IPNet{IP: ip, Mask: ipn.Mask}, nil
}

// normalize gives an IPv4 address its 4-byte form, so that IP and mask
// agree on the family, and refuses an IPv4-mapped IPv6 CIDR, which would
// be neither family to netlink.
func normalize(ip net.IP, mask net.IPMask, what, s string) (net.IP, error) {
	v4 := ip.To4()
	switch {
	case len(mask) == net.IPv4len && v4 != nil:
		return v4, nil
	case len(mask) == net.IPv6len && v4 == nil:
		return ip, nil
	default:
		return nil, invalid("%s %q: IPv4-mapped IPv6 addresses are not supported", what, s)
	}
}

// parseRoute parses a route. A destination with host bits set is taken as
// its network (as `ip route` would refuse it, and CNI plugins mask it).
func parseRoute(rs RouteSpec) (Route, error) {
	var r Route
	if rs.Gw != "" {
		gw := net.ParseIP(rs.Gw)
		if gw == nil {
			return r, invalid("route %q: gateway %q is not an IP address", rs.Dst, rs.Gw)
		}
		if v4 := gw.To4(); v4 != nil {
			gw = v4
		}
		if gw.IsUnspecified() || gw.IsMulticast() {
			return r, invalid("route %q: gateway %q is not a unicast address", rs.Dst, rs.Gw)
		}
		r.Gw = gw
	}
	if rs.Dst == "" {
		// The default route's family is its gateway's; without one it
		// has none, so the host must spell it 0.0.0.0/0 or ::/0.
		switch {
		case r.Gw == nil:
			return r, invalid("a default route (empty dst) needs a gateway; for an on-link one give dst 0.0.0.0/0 or ::/0")
		case r.Gw.To4() != nil:
			r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		default:
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		return r, nil
	}
	_, dst, err := net.ParseCIDR(rs.Dst)
	if err != nil {
		return r, invalid("route dst %q: not a CIDR", rs.Dst)
	}
	if dst.IP, err = normalize(dst.IP, dst.Mask, "route dst", rs.Dst); err != nil {
		return r, err
	}
	if r.Gw != nil && (r.Gw.To4() == nil) != (dst.IP.To4() == nil) {
		return r, invalid("route %q: gateway %q is of another IP family", rs.Dst, rs.Gw)
	}
	r.Dst = dst
	return r, nil
}
