package network

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func attrs(name, encap string, flags net.Flags) netlink.LinkAttrs {
	return netlink.LinkAttrs{Name: name, EncapType: encap, Flags: flags}
}

func TestPickDevice(t *testing.T) {
	lo := &netlink.Device{LinkAttrs: attrs("lo", "loopback", net.FlagLoopback|net.FlagUp)}
	eth0 := &netlink.Device{LinkAttrs: attrs("eth0", "ether", 0)}
	others := []netlink.Link{
		lo,
		&netlink.Dummy{LinkAttrs: attrs("dummy0", "ether", 0)},
		&netlink.Veth{LinkAttrs: attrs("veth0", "ether", 0)},
		&netlink.Sittun{LinkAttrs: attrs("sit0", "sit", 0)},
		&netlink.Device{LinkAttrs: attrs("ip6tnl0", "tunnel6", 0)},
	}
	if l, err := pickDevice(append(slices.Clone(others), eth0)); err != nil || l != eth0 {
		t.Fatalf("pickDevice = %v, %v; want eth0", l, err)
	}
	if _, err := pickDevice(others); err != ErrNoDevice || !errdefs.IsFailedPrecondition(err) ||
		!strings.Contains(err.Error(), "the VM has no network device") {
		t.Fatalf("without a device: %v", err)
	}
	eth1 := &netlink.Device{LinkAttrs: attrs("eth1", "ether", 0)}
	if _, err := pickDevice([]netlink.Link{lo, eth0, eth1}); !errdefs.IsFailedPrecondition(err) ||
		!strings.Contains(err.Error(), "2 network devices (eth0, eth1)") {
		t.Fatalf("with two devices: %v", err)
	}
}

func TestStale(t *testing.T) {
	addr := func(cidr string, flags int) netlink.Addr {
		ip, ipn, _ := net.ParseCIDR(cidr)
		ipn.IP = ip
		return netlink.Addr{IPNet: ipn, Flags: flags}
	}
	want := []*net.IPNet{addr("10.4.0.5/24", 0).IPNet, addr("2001:db8::5/64", 0).IPNet}
	for _, tc := range []struct {
		a     netlink.Addr
		stale bool
	}{
		{addr("10.4.0.5/24", unix.IFA_F_PERMANENT), false},
		{addr("2001:db8::5/64", unix.IFA_F_PERMANENT), false},
		{addr("10.4.0.5/16", unix.IFA_F_PERMANENT), true}, // another prefix
		{addr("10.4.0.6/24", unix.IFA_F_PERMANENT), true},
		{addr("2001:db8::6/64", unix.IFA_F_PERMANENT), true},
		{addr("fe80::1/64", unix.IFA_F_PERMANENT), false}, // the kernel's
		{addr("2001:db8::7/64", 0), false},                // SLAAC's
	} {
		if got := stale(tc.a, want); got != tc.stale {
			t.Errorf("stale(%s) = %v", tc.a.IPNet, got)
		}
	}
}
