package cgroup

import (
	"fmt"
	"sort"

	"github.com/containerd/errdefs"
)

// devicePolicy is the state of a cgroup v1 device controller, which rules
// are defined against: a default verdict and the exceptions to it, each a
// device pattern with the access bits it covers. It is a port of runc's
// emulator (opencontainers/cgroups/devices/devices_emulator.go, Apache-2.0,
// Aleksa Sarai / SUSE), without the parts that transition a live v1 group.
type devicePolicy struct {
	defaultAllow bool
	except       map[deviceKey]uint32
}

// deviceKey is a device pattern: a type ('b' or 'c') and numbers, each
// anyNumber or a number.
type deviceKey struct {
	typ          byte
	major, minor int64
}

// emulate replays rules on a deny-all group, the state runc's emulator
// starts from for a v2 group.
func emulate(rules []DeviceRule) (*devicePolicy, error) {
	p := &devicePolicy{}
	for i, r := range rules {
		if err := p.apply(r); err != nil {
			return nil, fmt.Errorf("device rule %d (%s): %w", i, r, err)
		}
	}
	return p, nil
}

// apply is a write of r to devices.allow or devices.deny. A rule of type 'a'
// resets the group whatever its numbers and access, as the kernel does.
func (p *devicePolicy) apply(r DeviceRule) error {
	if r.Type == devAll {
		*p = devicePolicy{defaultAllow: r.Allow}
		return nil
	}
	k := deviceKey{typ: r.Type, major: r.Major, minor: r.Minor}
	if r.Allow == p.defaultAllow {
		return p.remove(k, r.Access)
	}
	if p.except == nil {
		p.except = map[deviceKey]uint32{}
	}
	p.except[k] |= r.Access
	return nil
}

// remove takes access off the exception k. Like runc, and unlike the v1
// kernel which ignores it silently, removing access that a wider wildcard
// exception still grants is an error: the rule would not do what it says.
func (p *devicePolicy) remove(k deviceKey, access uint32) error {
	for _, w := range []deviceKey{
		{typ: k.typ, major: anyNumber, minor: k.minor},
		{typ: k.typ, major: k.major, minor: anyNumber},
		{typ: k.typ, major: anyNumber, minor: anyNumber},
	} {
		if w != k && p.except[w]&access != 0 {
			return fmt.Errorf("cannot punch a hole in the wildcard exception %s: %w",
				DeviceRule{Type: w.typ, Major: w.major, Minor: w.minor, Access: p.except[w]}, errdefs.ErrInvalidArgument)
		}
	}
	if left := p.except[k] &^ access; left != 0 {
		p.except[k] = left
	} else {
		delete(p.except, k)
	}
	return nil
}

// exceptions lists the exceptions as rules, in a fixed order; each has the
// verdict opposite to the default.
func (p *devicePolicy) exceptions() []DeviceRule {
	out := make([]DeviceRule, 0, len(p.except))
	for k, acc := range p.except {
		out = append(out, DeviceRule{Type: k.typ, Major: k.major, Minor: k.minor, Access: acc, Allow: !p.defaultAllow})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Major != b.Major {
			return a.Major < b.Major
		}
		if a.Minor != b.Minor {
			return a.Minor < b.Minor
		}
		return a.Type < b.Type
	})
	return out
}

// String writes r as a line of devices.list, e.g. "allow c 1:3 rwm".
func (r DeviceRule) String() string {
	verdict := "deny"
	if r.Allow {
		verdict = "allow"
	}
	num := func(n int64) string {
		if n == anyNumber {
			return "*"
		}
		return fmt.Sprint(n)
	}
	acc := ""
	for _, a := range []struct {
		bit uint32
		c   string
	}{{accRead, "r"}, {accWrite, "w"}, {accMknod, "m"}} {
		if r.Access&a.bit != 0 {
			acc += a.c
		}
	}
	return fmt.Sprintf("%s %c %s:%s %s", verdict, r.Type, num(r.Major), num(r.Minor), acc)
}
