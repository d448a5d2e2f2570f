package service

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/network"
)

// ConfigureNetwork maps a bad request to InvalidArgument before touching
// the device, and a VM without one to FailedPrecondition.
func TestConfigureNetworkErrors(t *testing.T) {
	var found int
	noDevice := &network.Configurer{FindLink: func(*netlink.Handle) (netlink.Link, error) {
		found++
		return nil, network.ErrNoDevice
	}}
	c, _ := client(t, Config{Network: noDevice})
	ctx := context.Background()
	for name, req := range map[string]*api.ConfigureNetworkRequest{
		"no mac":    {Addresses: []string{"10.4.0.5/24"}},
		"bad cidr":  {Mac: "aa:bb:cc:dd:ee:ff", Addresses: []string{"10.4.0.5"}},
		"bad gw":    {Mac: "aa:bb:cc:dd:ee:ff", Routes: []*api.Route{{Gw: "gateway"}}},
		"bad dst":   {Mac: "aa:bb:cc:dd:ee:ff", Routes: []*api.Route{{Dst: "10.0.0.0/40", Gw: "10.4.0.1"}}},
		"too many":  {Mac: "aa:bb:cc:dd:ee:ff", Addresses: make([]string, network.MaxAddresses+1)},
		"small mtu": {Mac: "aa:bb:cc:dd:ee:ff", Mtu: 10},
	} {
		if _, err := c.ConfigureNetwork(ctx, req); code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	if found != 0 {
		t.Fatal("an invalid request looked for the device")
	}
	_, err := c.ConfigureNetwork(ctx, &api.ConfigureNetworkRequest{
		Mac:       "aa:bb:cc:dd:ee:ff",
		Mtu:       1500,
		Addresses: []string{"10.4.0.5/24"},
		Routes:    []*api.Route{{Gw: "10.4.0.1"}},
	})
	if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "the VM has no network device") {
		t.Fatalf("without a device: %v", err)
	}
}
