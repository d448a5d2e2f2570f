// Package network gives a sandbox's VM the network of a host network
// namespace, the way Kata's tc-filter mode does: the VMM runs in the
// namespace with a tap device, and once CNI (run by CRI, or by nerdctl's
// hook) has configured the namespace's interface, traffic is mirrored
// between that interface and the tap with tc, and the guest's NIC takes
// the interface's MAC, addresses and routes. Nothing is routed or NATed on
// the host beyond what CNI did.
package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Tap is the name of the VM's tap device in its namespace.
const Tap = "msbtap0"

// Config is what the guest's NIC takes over from the host interface.
type Config struct {
	MAC       string
	MTU       int
	Addresses []string // CIDRs
	Routes    []Route
}

// Route is one route of the host interface; Dst "" is the default route.
type Route struct {
	Dst, Gw string
}

// NewNamespace creates a network namespace pinned at path (a bind mount of
// the namespace file), for a VM whose caller (nerdctl's hook) configures
// the network after the task exists.
func NewNamespace(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create netns pin: %w", err)
	}
	f.Close()
	err = onNewThreadNS(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		return unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	})
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("pin network namespace at %s: %w", path, err)
	}
	return nil
}

// RemoveNamespace unpins a namespace made by NewNamespace; a missing pin
// is fine.
func RemoveNamespace(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// onNewThreadNS runs fn on a locked thread that is thrown away afterwards,
// so a namespace change made by fn never leaks to other goroutines.
func onNewThreadNS(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	return <-errc
}

// in runs fn inside the namespace at path, on a thread of its own.
func in(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return onNewThreadNS(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return fn()
	})
}

// AddTap creates the VM's tap device in the namespace, up, owned by root.
func AddTap(path string) error {
	return in(path, addTap)
}

func addTap() error {
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: Tap}, Mode: netlink.TUNTAP_MODE_TAP,
		Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("add tap %s: %w", Tap, err)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	return netlink.LinkSetUp(tap)
}

// Mirror finds the interface CNI configured in the namespace (the one
// non-loopback interface beside the tap with an address), mirrors its
// traffic to and from the tap, and returns its configuration for the
// guest. It returns nil when the namespace has no such interface: the
// container has no network (nerdctl --net none).
func Mirror(path string) (*Config, error) {
	var cfg *Config
	err := in(path, func() error {
		link, addrs, err := cniLink()
		if err != nil || link == nil {
			return err
		}
		tap, err := netlink.LinkByName(Tap)
		if err != nil {
			return fmt.Errorf("tap %s: %w", Tap, err)
		}
		if err := netlink.LinkSetMTU(tap, link.Attrs().MTU); err != nil {
			return fmt.Errorf("tap MTU: %w", err)
		}
		if err := redirect(link, tap); err != nil {
			return err
		}
		if err := redirect(tap, link); err != nil {
			return err
		}
		cfg, err = config(link, addrs)
		return err
	})
	return cfg, err
}

func cniLink() (netlink.Link, []netlink.Addr, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == Tap || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		var global []netlink.Addr
		for _, ad := range addrs {
			if ad.IP.IsGlobalUnicast() {
				global = append(global, ad)
			}
		}
		if len(global) > 0 {
			return l, global, nil
		}
	}
	return nil, nil, nil
}

// redirect sends everything that arrives on from out of to.
func redirect(from, to netlink.Link) error {
	qdisc := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS,
	}}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index, Parent: netlink.MakeHandle(0xffff, 0),
			Priority: 1, Protocol: unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

func config(link netlink.Link, addrs []netlink.Addr) (*Config, error) {
	c := &Config{MAC: link.Attrs().HardwareAddr.String(), MTU: link.Attrs().MTU}
	for _, a := range addrs {
		c.Addresses = append(c.Addresses, a.IPNet.String())
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", link.Attrs().Name, err)
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Table != unix.RT_TABLE_MAIN {
			continue // the guest kernel makes its own on-link routes
		}
		var rt Route
		if r.Dst != nil && !isDefault(r.Dst) {
			rt.Dst = r.Dst.String()
		}
		if r.Gw != nil {
			rt.Gw = r.Gw.String()
		}
		c.Routes = append(c.Routes, rt)
	}
	return c, nil
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0 && n.IP.IsUnspecified()
}

// DelTap removes the VM's tap from a namespace that outlives the VM (a
// pod's, made by CRI); a namespace or tap already gone is fine.
func DelTap(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return in(path, func() error {
		l, err := netlink.LinkByName(Tap)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return err
		}
		return netlink.LinkDel(l)
	})
}
