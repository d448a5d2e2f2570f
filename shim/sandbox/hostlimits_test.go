package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/vm"
)

func TestCgroupParent(t *testing.T) {
	own := func() (string, error) { return "/system.slice/containerd.service", nil }
	for _, tc := range []struct{ path, want string }{
		{"/default/c1", "/default"},
		{"/kubepods/burstable/pod1/sb1", "/kubepods/burstable/pod1"},
		{"/c1", "/"},
		{"", "/system.slice/containerd.service"},
		{"sub/c1", "/system.slice/containerd.service/sub"},
		{"kubepods-burstable-pod1.slice:cri-containerd:sb1", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"},
		{"system.slice:nerdctl:c1", "/system.slice"},
		{":nerdctl:c1", "/system.slice"},
		{"-.slice:p:c1", "/"},
	} {
		got, err := cgroupParent(tc.path, own)
		if err != nil || got != tc.want {
			t.Errorf("cgroupParent(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	for _, bad := range []string{"../../c1", "kubepods:cri-containerd:sb1", "a--b.slice:p:c1"} {
		if got, err := cgroupParent(bad, own); err == nil {
			t.Errorf("cgroupParent(%q) = %q, want an error", bad, got)
		}
	}
}

func TestHostLimitsQuota(t *testing.T) {
	q, p := int64(10000), uint64(100000)
	spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/default/c1",
		Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: &p}}}}
	h, err := HostLimits(spec, spec, "c1", 256)
	if err != nil {
		t.Fatal(err)
	}
	want := vm.HostLimits{Cgroup: "/default/" + vm.CgroupPrefix + "c1", CPUQuota: 10000, CPUPeriod: 100000}
	if h != want {
		t.Errorf("host limits %+v, want %+v", h, want)
	}
	if _, err := HostLimits(spec, spec, "c1", ^uint32(0)); err == nil {
		t.Error("a 4 PiB VM was not refused")
	}
}
