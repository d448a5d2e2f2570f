package vm

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestFits(t *testing.T) {
	bounds := []memBound{{24105, "MemTotal"}, {8192, "memory limit of cgroup /kubepods"}}
	if err := fits(8192-VMMOverheadMiB, bounds); err != nil {
		t.Errorf("a VM that fits the lowest bound exactly: %v", err)
	}
	err := fits(8192-VMMOverheadMiB+1, bounds)
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "8192 MiB of memory") ||
		!strings.Contains(err.Error(), "/kubepods") {
		t.Errorf("a VM over the cgroup's limit: %v", err)
	}
	err = fits(512<<10, bounds[:1])
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "VM memory 524288 MiB") ||
		!strings.Contains(err.Error(), "24105 MiB of memory the host can give (MemTotal)") {
		t.Errorf("a 512 GiB VM on a 24 GiB host: %v", err)
	}
}

func TestCgroupLimits(t *testing.T) {
	limits := map[string]uint64{"/kubepods": 4096, "/": 100000}
	got := cgroupLimits("/kubepods/burstable/pod1", func(p string) (uint64, bool) {
		v, ok := limits[p]
		return v, ok
	})
	if len(got) != 2 || got[0] != (memBound{4096, "memory limit of cgroup /kubepods"}) || got[1].mib != 100000 {
		t.Errorf("limits on the way up: %+v", got)
	}
}

func TestHostLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		h  HostLimits
		ok bool
	}{
		{HostLimits{}, true},
		{HostLimits{Cgroup: "/default/msb-c1"}, true},
		{HostLimits{Cgroup: "/default/msb-c1", CPUQuota: 10000, CPUPeriod: 100000}, true},
		{HostLimits{Cgroup: "/default/c1"}, false},
		{HostLimits{Cgroup: "default/msb-c1"}, false},
		{HostLimits{Cgroup: "/default/../msb-c1"}, false},
		{HostLimits{Cgroup: "/default/msb-c1", CPUQuota: 10000}, false},
		{HostLimits{Cgroup: "/default/msb-c1", CPUQuota: -5, CPUPeriod: 100000}, false},
		{HostLimits{CPUQuota: 10000, CPUPeriod: 100000}, false},
	} {
		if err := tc.h.validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.h, err, tc.ok)
		}
	}
}

func TestRemoveHostCgroupRefusesOthers(t *testing.T) {
	for _, p := range []string{"/", "/kubepods", "msb-x", "/default/c1"} {
		if err := RemoveHostCgroup(p); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("RemoveHostCgroup(%q): %v", p, err)
		}
	}
}
