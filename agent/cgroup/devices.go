package cgroup

import (
	"fmt"
	"math"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The device controller of cgroup v2 is an eBPF program
// (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the group: the kernel runs it on
// every mknod and every open of a device node by a process in the group or
// below it, and denies what it returns 0 for. The program is built the way
// runc builds it (libcontainer/specconv and opencontainers/cgroups/devices):
// the spec's linux.resources.devices, then runc's default allow list, are
// replayed through an emulation of the cgroup v1 device controller, and the
// resulting policy is compiled. So a container in the VM reaches the same
// device nodes as under runc, and none of the VM's disks and consoles.

// Device types and access bits, as the kernel passes them to the program.
const (
	devAll   = 'a'
	devBlock = 'b'
	devChar  = 'c'

	accMknod = unix.BPF_DEVCG_ACC_MKNOD
	accRead  = unix.BPF_DEVCG_ACC_READ
	accWrite = unix.BPF_DEVCG_ACC_WRITE
	accAll   = accMknod | accRead | accWrite
)

// anyNumber stands for every major or minor number (OCI's null, "*").
const anyNumber = -1

// DeviceRule is one rule of the device controller: Type is 'a' (any device,
// any number), 'b' or 'c'; Major and Minor are anyNumber or a number;
// Access is a set of acc* bits.
type DeviceRule struct {
	Type         byte
	Major, Minor int64
	Access       uint32
	Allow        bool
}

// defaultDevices are the rules runc (v1.5, specconv.AllowedDevices) adds
// after the spec's: mknod of any node (opening it is what counts), the
// standard character devices, the ptys and /dev/net/tun. The console
// (5:1) and the virtual terminals are not in it. A rule with a path is left
// out when the spec's linux.devices defines that path, as runc does.
var defaultDevices = []struct {
	path string
	rule DeviceRule
}{
	{"", DeviceRule{Type: devChar, Major: anyNumber, Minor: anyNumber, Access: accMknod, Allow: true}},
	{"", DeviceRule{Type: devBlock, Major: anyNumber, Minor: anyNumber, Access: accMknod, Allow: true}},
	{"/dev/null", DeviceRule{Type: devChar, Major: 1, Minor: 3, Access: accAll, Allow: true}},
	{"/dev/random", DeviceRule{Type: devChar, Major: 1, Minor: 8, Access: accAll, Allow: true}},
	{"/dev/full", DeviceRule{Type: devChar, Major: 1, Minor: 7, Access: accAll, Allow: true}},
	{"/dev/tty", DeviceRule{Type: devChar, Major: 5, Minor: 0, Access: accAll, Allow: true}},
	{"/dev/zero", DeviceRule{Type: devChar, Major: 1, Minor: 5, Access: accAll, Allow: true}},
	{"/dev/urandom", DeviceRule{Type: devChar, Major: 1, Minor: 9, Access: accAll, Allow: true}},
	{"", DeviceRule{Type: devChar, Major: 136, Minor: anyNumber, Access: accAll, Allow: true}}, // /dev/pts/*
	{"", DeviceRule{Type: devChar, Major: 5, Minor: 2, Access: accAll, Allow: true}},           // /dev/ptmx
	{"", DeviceRule{Type: devChar, Major: 10, Minor: 200, Access: accAll, Allow: true}},        // /dev/net/tun
}

// DeviceRules converts linux.resources.devices into rules and appends the
// defaults; nodes is linux.devices. An empty list leaves the defaults
// alone, on a deny-all base: like runc, not the runtime-spec's "no rules,
// no restriction".
func DeviceRules(rules []specs.LinuxDeviceCgroup, nodes []specs.LinuxDevice) ([]DeviceRule, error) {
	out := make([]DeviceRule, 0, len(rules)+len(defaultDevices))
	for i, r := range rules {
		dr, err := deviceRule(r)
		if err != nil {
			return nil, fmt.Errorf("linux.resources.devices[%d]: %w", i, err)
		}
		out = append(out, dr)
	}
	defined := map[string]bool{}
	for _, n := range nodes {
		defined[n.Path] = true
	}
	for _, d := range defaultDevices {
		if d.path == "" || !defined[d.path] {
			out = append(out, d.rule)
		}
	}
	return out, nil
}

// deviceRule converts one OCI rule as runc's specconv does: no type means
// 'a', a null or negative number means any.
func deviceRule(r specs.LinuxDeviceCgroup) (DeviceRule, error) {
	dr := DeviceRule{Type: devAll, Major: anyNumber, Minor: anyNumber, Allow: r.Allow}
	switch r.Type {
	case "", "a":
	case "b", "c":
		dr.Type = r.Type[0]
	default:
		return dr, fmt.Errorf("device type %q: %w", r.Type, errdefs.ErrInvalidArgument)
	}
	var err error
	if dr.Major, err = deviceNumber(r.Major); err != nil {
		return dr, fmt.Errorf("major: %w", err)
	}
	if dr.Minor, err = deviceNumber(r.Minor); err != nil {
		return dr, fmt.Errorf("minor: %w", err)
	}
	dr.Access, err = parseAccess(r.Access)
	return dr, err
}

func deviceNumber(n *int64) (int64, error) {
	switch {
	case n == nil || *n < 0:
		return anyNumber, nil
	case *n > math.MaxUint32:
		return 0, fmt.Errorf("%d is out of range: %w", *n, errdefs.ErrInvalidArgument)
	}
	return *n, nil
}

// parseAccess reads "rwm" letters; runc rejects an empty access too.
func parseAccess(s string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("empty device access: %w", errdefs.ErrInvalidArgument)
	}
	var acc uint32
	for _, c := range s {
		switch c {
		case 'r':
			acc |= accRead
		case 'w':
			acc |= accWrite
		case 'm':
			acc |= accMknod
		default:
			return 0, fmt.Errorf("device access %q: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return acc, nil
}
