package network

import (
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const testMAC = "aa:bb:cc:dd:ee:ff"

func TestParse(t *testing.T) {
	c, err := Parse(Spec{
		MAC:       "AA:BB:CC:DD:EE:FF",
		MTU:       1450,
		Addresses: []string{"10.4.0.5/24", "2001:db8::5/64"},
		Routes: []RouteSpec{
			{Gw: "10.4.0.1"},
			{Gw: "2001:db8::1"},
			{Dst: "10.9.1.7/16", Gw: "10.4.0.254"}, // host bits set: its network
			{Dst: "169.254.1.1/32"},
			{Dst: "fd00::/8", Gw: "fe80::1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "mac aa:bb:cc:dd:ee:ff mtu 1450 addresses [10.4.0.5/24 2001:db8::5/64] " +
		"routes [0.0.0.0/0 via 10.4.0.1 ::/0 via 2001:db8::1 10.9.0.0/16 via 10.4.0.254 169.254.1.1/32 fd00::/8 via fe80::1]"
	if got := c.String(); got != want {
		t.Fatalf("parsed\n%s\nwant\n%s", got, want)
	}
	// IPv4 in its 4-byte form throughout, so IP and mask agree for netlink.
	if len(c.Addresses[0].IP) != 4 || len(c.Routes[0].Dst.IP) != 4 || len(c.Routes[0].Gw) != 4 || len(c.Routes[2].Dst.IP) != 4 {
		t.Fatalf("IPv4 not in 4-byte form: %#v", c)
	}
	if len(c.Addresses[1].IP) != 16 || len(c.Routes[1].Dst.Mask) != 16 {
		t.Fatalf("IPv6 not in 16-byte form: %#v", c)
	}
}

func TestParseMinimal(t *testing.T) {
	c, err := Parse(Spec{MAC: testMAC})
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != 0 || len(c.Addresses) != 0 || len(c.Routes) != 0 {
		t.Fatalf("parsed %s", c)
	}
}

func TestParseInvalid(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	manyRoutes := make([]RouteSpec, MaxRoutes+1)
	for i := range manyRoutes {
		manyRoutes[i] = RouteSpec{Dst: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}
	}
	okAddrs := many(MaxAddresses, func(i int) string { return fmt.Sprintf("10.0.0.%d/24", i+1) })
	if _, err := Parse(Spec{MAC: testMAC, Addresses: okAddrs, Routes: manyRoutes[:MaxRoutes]}); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	for name, tc := range map[string]struct {
		spec Spec
		msg  string
	}{
		"no mac":         {Spec{}, "mac is required"},
		"bad mac":        {Spec{MAC: "aa:bb:cc"}, `mac "aa:bb:cc"`},
		"long mac":       {Spec{MAC: "aa:bb:cc:dd:ee:ff:00:11"}, "not a 6-byte"},
		"multicast mac":  {Spec{MAC: "01:00:5e:00:00:01"}, "multicast"},
		"zero mac":       {Spec{MAC: "00:00:00:00:00:00"}, "all zeros"},
		"small mtu":      {Spec{MAC: testMAC, MTU: 67}, "mtu 67"},
		"big mtu":        {Spec{MAC: testMAC, MTU: 65536}, "mtu 65536"},
		"mtu for ipv6":   {Spec{MAC: testMAC, MTU: 1000, Addresses: []string{"fd00::2/64"}}, "IPv6 needs"},
		"bare ip":        {Spec{MAC: testMAC, Addresses: []string{"10.4.0.5"}}, "not a CIDR"},
		"bad cidr":       {Spec{MAC: testMAC, Addresses: []string{"10.4.0.300/24"}}, "not a CIDR"},
		"bad prefix":     {Spec{MAC: testMAC, Addresses: []string{"10.4.0.5/33"}}, "not a CIDR"},
		"unspecified":    {Spec{MAC: testMAC, Addresses: []string{"0.0.0.0/0"}}, "cannot be assigned"},
		"loopback":       {Spec{MAC: testMAC, Addresses: []string{"127.0.0.2/8"}}, "cannot be assigned"},
		"multicast":      {Spec{MAC: testMAC, Addresses: []string{"ff02::1/64"}}, "cannot be assigned"},
		"mapped":         {Spec{MAC: testMAC, Addresses: []string{"::ffff:10.0.0.1/120"}}, "IPv4-mapped"},
		"same ip twice":  {Spec{MAC: testMAC, Addresses: []string{"10.4.0.5/24", "10.4.0.5/16"}}, "given twice"},
		"many addresses": {Spec{MAC: testMAC, Addresses: append(okAddrs, "10.0.1.1/24")}, "at most 16"},
		"many routes":    {Spec{MAC: testMAC, Routes: manyRoutes}, "at most 64"},
		"bad dst":        {Spec{MAC: testMAC, Routes: []RouteSpec{{Dst: "10.9.0.0"}}}, "not a CIDR"},
		"bad gw":         {Spec{MAC: testMAC, Routes: []RouteSpec{{Gw: "10.4.0.1/24"}}}, "not an IP address"},
		"zero gw":        {Spec{MAC: testMAC, Routes: []RouteSpec{{Gw: "0.0.0.0"}}}, "not a unicast"},
		"multicast gw":   {Spec{MAC: testMAC, Routes: []RouteSpec{{Gw: "224.0.0.1"}}}, "not a unicast"},
		"mixed families": {Spec{MAC: testMAC, Routes: []RouteSpec{{Dst: "fd00::/8", Gw: "10.4.0.1"}}}, "another IP family"},
		"default no gw":  {Spec{MAC: testMAC, Routes: []RouteSpec{{}}}, "needs a gateway"},
		"default twice":  {Spec{MAC: testMAC, Routes: []RouteSpec{{Gw: "10.4.0.1"}, {Dst: "0.0.0.0/0", Gw: "10.4.0.2"}}}, "two routes to 0.0.0.0/0"},
		"same dst twice": {Spec{MAC: testMAC, Routes: []RouteSpec{{Dst: "10.9.0.0/16"}, {Dst: "10.9.3.0/16", Gw: "10.4.0.1"}}}, "two routes to 10.9.0.0/16"},
		"mapped dst":     {Spec{MAC: testMAC, Routes: []RouteSpec{{Dst: "::ffff:10.0.0.0/104"}}}, "IPv4-mapped"},
	} {
		_, err := Parse(tc.spec)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want InvalidArgument with %q", name, err, tc.msg)
		}
	}
}
