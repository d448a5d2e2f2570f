package cgroup

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func dev(allow bool, typ string, major, minor *int64, access string) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: major, Minor: minor, Access: access}
}

// ctrDefault is the rule list ctr sends: containerd's default spec (deny
// all) and oci.WithDefaultUnixDevices.
var ctrDefault = []specs.LinuxDeviceCgroup{
	dev(false, "", nil, nil, "rwm"),
	dev(true, "c", ptr(int64(1)), ptr(int64(3)), "rwm"),
	dev(true, "c", ptr(int64(1)), ptr(int64(8)), "rwm"),
	dev(true, "c", ptr(int64(1)), ptr(int64(7)), "rwm"),
	dev(true, "c", ptr(int64(5)), ptr(int64(0)), "rwm"),
	dev(true, "c", ptr(int64(1)), ptr(int64(5)), "rwm"),
	dev(true, "c", ptr(int64(1)), ptr(int64(9)), "rwm"),
	dev(true, "c", ptr(int64(5)), ptr(int64(1)), "rwm"),
	dev(true, "c", ptr(int64(136)), nil, "rwm"),
	dev(true, "c", ptr(int64(5)), ptr(int64(2)), "rwm"),
}

// request is one access the kernel asks the filter about, and the verdict
// runc's device controller gives it.
type request struct {
	typ          byte
	major, minor uint32
	access       string
	allow        bool
}

func (q request) run(t *testing.T, rules []specs.LinuxDeviceCgroup, nodes []specs.LinuxDevice) {
	t.Helper()
	dr, err := DeviceRules(rules, nodes)
	if err != nil {
		t.Fatal(err)
	}
	p, err := emulate(dr)
	if err != nil {
		t.Fatal(err)
	}
	typ := uint32(unix.BPF_DEVCG_DEV_CHAR)
	if q.typ == 'b' {
		typ = unix.BPF_DEVCG_DEV_BLOCK
	}
	acc, err := parseAccess(q.access)
	if err != nil {
		t.Fatal(err)
	}
	if got := runFilter(t, deviceFilter(p), typ, acc, q.major, q.minor); got != q.allow {
		t.Errorf("%c %d:%d %s: allowed=%v, want %v (policy %v)", q.typ, q.major, q.minor, q.access, got, q.allow, p.exceptions())
	}
}

func TestDeviceFilter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		nodes []specs.LinuxDevice
		reqs  []request
	}{
		{"ctr default", ctrDefault, nil, []request{
			{'c', 1, 3, "rw", true}, {'c', 1, 9, "r", true}, {'c', 136, 7, "rw", true},
			{'c', 10, 200, "rw", true},                         // runc's default list
			{'c', 5, 1, "w", true},                             // containerd's rule for /dev/console
			{'b', 254, 0, "m", true}, {'c', 229, 0, "m", true}, // mknod of anything
			{'b', 254, 0, "r", false}, {'b', 254, 0, "w", false}, {'b', 254, 1, "rw", false},
			{'c', 229, 0, "w", false}, {'c', 4, 1, "r", false}, {'c', 1, 1, "r", false},
		}},
		{"privileged", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, nil, []request{
			{'b', 254, 0, "rw", true}, {'c', 229, 0, "rw", true}, {'c', 5, 1, "w", true},
		}},
		{"no rules", nil, nil, []request{
			{'c', 1, 3, "rw", true}, {'c', 5, 2, "rw", true}, {'b', 8, 0, "m", true},
			{'b', 8, 0, "r", false}, {'c', 5, 1, "w", false}, {'c', 7, 0, "r", false},
		}},
		{"partial access is not more", []specs.LinuxDeviceCgroup{dev(true, "c", ptr(int64(7)), nil, "r")}, nil, []request{
			{'c', 7, 3, "r", true}, {'c', 7, 3, "w", false}, {'c', 7, 3, "rw", false}, {'b', 7, 3, "r", false},
		}},
		{"access merges", []specs.LinuxDeviceCgroup{
			dev(true, "c", ptr(int64(7)), ptr(int64(0)), "r"), dev(true, "c", ptr(int64(7)), ptr(int64(0)), "w"),
		}, nil, []request{{'c', 7, 0, "rw", true}, {'c', 7, 1, "r", false}}},
		{"deny takes access away", []specs.LinuxDeviceCgroup{
			dev(true, "c", ptr(int64(7)), ptr(int64(3)), "rw"), dev(false, "c", ptr(int64(7)), ptr(int64(3)), "w"),
		}, nil, []request{{'c', 7, 3, "r", true}, {'c', 7, 3, "w", false}, {'c', 7, 3, "rw", false}}},
		{"deny on allow-all", []specs.LinuxDeviceCgroup{
			{Allow: true, Access: "rwm"}, dev(false, "c", ptr(int64(7)), ptr(int64(0)), "w"),
		}, nil, []request{
			{'c', 7, 0, "r", true}, {'c', 7, 0, "w", false},
			{'c', 7, 0, "rw", false}, // the v1 kernel denies; runc's filter would allow
			{'c', 7, 1, "rw", true}, {'b', 7, 0, "rw", true},
		}},
		{"type a resets whatever its numbers", []specs.LinuxDeviceCgroup{
			{Allow: true, Access: "rwm"}, dev(false, "a", ptr(int64(7)), ptr(int64(0)), "r"),
		}, nil, []request{{'c', 8, 0, "rw", false}, {'c', 1, 3, "rw", true}}},
		{"linux.devices redefines a default", []specs.LinuxDeviceCgroup{dev(false, "a", nil, nil, "rwm")},
			[]specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}}, []request{
				{'c', 1, 3, "rw", false}, {'c', 1, 5, "rw", true},
			}},
		{"largest numbers", []specs.LinuxDeviceCgroup{dev(true, "b", ptr(int64(1<<32-1)), ptr(int64(1<<31)), "r")}, nil, []request{
			{'b', 1<<32 - 1, 1 << 31, "r", true}, {'b', 1<<32 - 1, 0, "r", false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, q := range tc.reqs {
				q.run(t, tc.rules, tc.nodes)
			}
		})
	}
}

func TestDeviceRulesInvalid(t *testing.T) {
	for name, r := range map[string]specs.LinuxDeviceCgroup{
		"no access":   dev(true, "c", nil, nil, ""),
		"bad access":  dev(true, "c", nil, nil, "rx"),
		"bad type":    dev(true, "u", nil, nil, "r"),
		"major range": dev(true, "c", ptr(int64(1<<32)), nil, "r"),
	} {
		if _, err := DeviceRules([]specs.LinuxDeviceCgroup{r}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
	}
}

func TestDevicePolicy(t *testing.T) {
	// Taking access off one device that a wildcard grants would not work
	// in the v1 kernel; runc refuses it rather than ignore it.
	rules, err := DeviceRules([]specs.LinuxDeviceCgroup{
		dev(true, "c", ptr(int64(7)), nil, "rw"), dev(false, "c", ptr(int64(7)), ptr(int64(3)), "w"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emulate(rules); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("hole in a wildcard: err = %v", err)
	}
	rules, _ = DeviceRules([]specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, nil)
	if p, err := emulate(rules); err != nil || !p.defaultAllow || len(p.except) != 0 {
		t.Fatalf("privileged: policy %+v, %v; want allow-all", p, err)
	}
	if s := (DeviceRule{Type: 'c', Major: 136, Minor: anyNumber, Access: accRead | accMknod, Allow: true}).String(); s != "allow c 136:* rm" {
		t.Fatalf("String = %q", s)
	}
}
