package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// These tests configure a dummy link standing in for eth0 in a network
// namespace of their own; they need root (not a VM) and skip otherwise.

// testNS returns a netlink handle on a new network namespace.
func testNS(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// netns.New moves the calling thread into the new namespace: it must
	// stay this goroutine's until moved back.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Skipf("cannot create a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, so it ends with the goroutine rather
		// than run other goroutines in the wrong namespace.
		ns.Close()
		t.Fatalf("return to the original network namespace: %v", err)
	}
	runtime.UnlockOSThread()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		ns.Close()
	})
	return h
}

// addLink adds link to the namespace and returns a Configurer on it.
func addLink(t *testing.T, h *netlink.Handle, link netlink.Link) *Configurer {
	t.Helper()
	if err := h.LinkAdd(link); err != nil {
		t.Fatalf("add %s: %v", link.Attrs().Name, err)
	}
	name := link.Attrs().Name
	return &Configurer{Handle: h, FindLink: func(h *netlink.Handle) (netlink.Link, error) { return h.LinkByName(name) }}
}

// addEth0 adds a dummy link named eth0 to stand in for the VM's device, or
// where the kernel has no dummy driver, one end of a veth pair whose other
// end is up (so that eth0 has a carrier, as a dummy has).
func addEth0(t *testing.T, h *netlink.Handle) *Configurer {
	t.Helper()
	err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}})
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Log("no dummy driver: eth0 is a veth")
		err = h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"})
		if err == nil {
			err = setUp(h, "peer0")
		}
	}
	if err != nil {
		t.Fatalf("add eth0: %v", err)
	}
	return &Configurer{Handle: h, FindLink: func(h *netlink.Handle) (netlink.Link, error) { return h.LinkByName("eth0") }}
}

func setUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(link)
}

func mustParse(t *testing.T, s Spec) *Config {
	t.Helper()
	c, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// state is what the tests check of a link, as comparable strings.
type state struct {
	mac       string
	mtu       int
	up, loUp  bool
	addresses []string // without the kernel's link-local one
	routes    []string // without the kernel's own
}

func linkState(t *testing.T, h *netlink.Handle, name string) state {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	s := state{mac: a.HardwareAddr.String(), mtu: a.MTU, up: a.Flags&net.FlagUp != 0, loUp: lo.Attrs().Flags&net.FlagUp != 0}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		if ad.IP.IsLinkLocalUnicast() {
			continue
		}
		str := ad.IPNet.String()
		if ad.Flags&unix.IFA_F_TENTATIVE != 0 {
			str += " tentative"
		}
		s.addresses = append(s.addresses, str)
	}
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		// netlink gives a default route a nil or a /0 Dst, by version.
		dst := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				dst = r.Dst.String()
			}
		}
		str := dst
		if r.Gw != nil {
			str += " via " + r.Gw.String()
		}
		if r.Scope == netlink.SCOPE_LINK {
			str += " scope link"
		}
		s.routes = append(s.routes, str)
	}
	slices.Sort(s.addresses)
	slices.Sort(s.routes)
	return s
}

func checkState(t *testing.T, got, want state) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("link state\n%+v\nwant\n%+v", got, want)
	}
}

func TestRootConfigure(t *testing.T) {
	h := testNS(t)
	c := addEth0(t, h)
	cfg := mustParse(t, Spec{
		MAC:       testMAC,
		MTU:       1450,
		Addresses: []string{"10.4.0.5/24", "2001:db8::5/64"},
		Routes: []RouteSpec{
			{Gw: "10.4.0.1"},
			{Gw: "2001:db8::1"},
			{Dst: "10.9.0.0/16", Gw: "10.4.0.254"},
			// Before the on-link route that makes its gateway reachable.
			{Dst: "10.10.0.0/16", Gw: "169.254.1.1"},
			{Dst: "169.254.1.1/32"},
		},
	})
	want := state{
		mac: testMAC, mtu: 1450, up: true, loUp: true,
		addresses: []string{"10.4.0.5/24", "2001:db8::5/64"},
		routes: []string{
			"10.10.0.0/16 via 169.254.1.1", "10.9.0.0/16 via 10.4.0.254",
			"169.254.1.1/32 scope link", "default via 10.4.0.1", "default via 2001:db8::1",
		},
	}
	// A second call finds everything there and succeeds.
	for i := range 2 {
		if err := c.Configure(cfg); err != nil {
			t.Fatalf("configure #%d: %v", i+1, err)
		}
		checkState(t, linkState(t, h, "eth0"), want)
	}

	// Another config replaces the first: nothing of it is left.
	cfg = mustParse(t, Spec{
		MAC:       "02:00:00:00:00:02",
		Addresses: []string{"10.5.0.7/16", "10.4.0.6/24"},
		Routes:    []RouteSpec{{Gw: "10.5.0.1"}},
	})
	if err := c.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	checkState(t, linkState(t, h, "eth0"), state{
		mac: "02:00:00:00:00:02", mtu: 1450, up: true, loUp: true, // MTU 0 kept it
		addresses: []string{"10.4.0.6/24", "10.5.0.7/16"},
		routes:    []string{"default via 10.5.0.1"},
	})
}

func TestRootNoDevice(t *testing.T) {
	h := testNS(t)
	// A dummy (or veth) is no network device to FindDevice.
	addEth0(t, h)
	c := &Configurer{Handle: h}
	err := c.Configure(mustParse(t, Spec{MAC: testMAC}))
	if err != ErrNoDevice {
		t.Fatalf("configure without a device: %v", err)
	}
	if s := linkState(t, h, "eth0"); s.up || s.loUp {
		t.Fatalf("touched links: %+v", s)
	}
}

func TestRootFailures(t *testing.T) {
	h := testNS(t)
	// A veth takes at most 65535 as MTU; Parse would not let this through.
	c := addLink(t, h, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"})
	if err := setUp(h, "eth0"); err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, Spec{MAC: testMAC})
	cfg.MTU = 70000
	err := c.Configure(cfg)
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("configure with a bad MTU: %v", err)
	}
	// Brought back up.
	if s := linkState(t, h, "eth0"); !s.up {
		t.Fatalf("left down: %+v", s)
	}

	// An unreachable gateway is the kernel's to refuse.
	cfg = mustParse(t, Spec{MAC: testMAC, Addresses: []string{"10.4.0.5/24"}, Routes: []RouteSpec{{Gw: "10.6.0.1"}}})
	if err := c.Configure(cfg); err == nil {
		t.Fatal("configure with an unreachable gateway succeeded")
	} else {
		t.Log(err)
	}
}
