package oci

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/vm"
)

// GuestOverheadMiB is the memory added to a container's memory limit for
// what runs beside it in the VM: the guest kernel (with its page tables,
// slab and page cache floor) and msb-agent. A container limited to L MiB
// gets a VM of L+64 MiB, so the limit is what it can use, as under runc.
const GuestOverheadMiB = 64

// DefaultVCPUs and DefaultMemoryMiB size a VM whose spec sets no limit,
// unless the shim's runtime options say otherwise (Defaults).
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 256
)

// defaultCFSPeriod is the kernel's cpu.cfs_period_us, used when a quota
// comes without a period.
const defaultCFSPeriod = 100000

// Defaults are the VM size for a spec without limits (the shim's runtime
// options), and the host's CPU count.
type Defaults struct {
	VCPUs     uint32 // 0 means DefaultVCPUs
	MemoryMiB uint32 // 0 means DefaultMemoryMiB; the whole VM, overhead included
	HostCPUs  int    // 0 means runtime.NumCPU()
}

// Size is a VM's size.
type Size struct {
	VCPUs     uint32
	MemoryMiB uint32
}

// VMSize sizes the VM of spec:
//
//   - vCPUs: ceil(cpu.quota / cpu.period) when a quota is set (period
//     100000 µs when unset); else the number of CPUs in cpu.cpus when a
//     cpuset is set (the container could not run wider than that on the
//     host); else the default. The quota wins over the cpuset because it is
//     what --cpus and Kubernetes CPU limits set. The result is clamped to
//     1..min(host CPUs, vm.MaxVCPUs): a VM cannot run wider than the host.
//   - memory: ceil(memory.limit / MiB) + GuestOverheadMiB when a limit is
//     set (> 0), else the default (the whole VM). At least vm.MinMemoryMiB;
//     above vm.MaxMemoryMiB is an error.
func VMSize(spec *specs.Spec, d Defaults) (Size, error) {
	if d.VCPUs == 0 {
		d.VCPUs = DefaultVCPUs
	}
	if d.MemoryMiB == 0 {
		d.MemoryMiB = DefaultMemoryMiB
	}
	if d.HostCPUs <= 0 {
		d.HostCPUs = runtime.NumCPU()
	}
	var res *specs.LinuxResources
	if spec != nil && spec.Linux != nil {
		res = spec.Linux.Resources
	}

	vcpus := uint64(d.VCPUs)
	if res != nil && res.CPU != nil {
		c := res.CPU
		switch quota, period := CPUQuota(spec); {
		case quota > 0:
			vcpus = (uint64(quota) + period - 1) / period
		case c.Cpus != "":
			n, err := cpusetCount(c.Cpus)
			if err != nil {
				return Size{}, fmt.Errorf("linux.resources.cpu.cpus %q: %v: %w", c.Cpus, err, errdefs.ErrInvalidArgument)
			}
			vcpus = uint64(n)
		}
	}
	maxV := uint64(min(d.HostCPUs, vm.MaxVCPUs))
	vcpus = max(1, min(vcpus, maxV))

	mem := uint64(d.MemoryMiB)
	if res != nil && res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
		mem = (uint64(*res.Memory.Limit)+(1<<20)-1)>>20 + GuestOverheadMiB
	}
	if mem > vm.MaxMemoryMiB {
		return Size{}, fmt.Errorf("VM memory %d MiB (limit plus %d MiB guest overhead, or the default) exceeds %d MiB: %w",
			mem, GuestOverheadMiB, vm.MaxMemoryMiB, errdefs.ErrInvalidArgument)
	}
	mem = max(mem, vm.MinMemoryMiB)
	return Size{VCPUs: uint32(vcpus), MemoryMiB: uint32(mem)}, nil
}

// CPUQuota is the spec's CPU limit, quota µs per period µs (period 100000
// when unset), as runc sets it on the container's cgroup: it sizes the
// vCPUs and bounds the VMM's host CPU time. A quota of 0 means none.
func CPUQuota(spec *specs.Spec) (quota int64, period uint64) {
	if spec == nil || spec.Linux == nil || spec.Linux.Resources == nil || spec.Linux.Resources.CPU == nil {
		return 0, 0
	}
	c := spec.Linux.Resources.CPU
	if c.Quota == nil || *c.Quota <= 0 {
		return 0, 0
	}
	period = defaultCFSPeriod
	if c.Period != nil && *c.Period > 0 {
		period = *c.Period
	}
	return *c.Quota, period
}

// cpusetCount counts the CPUs of a cpuset list like "0-3,8,10-11".
func cpusetCount(s string) (int, error) {
	seen := map[uint64]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("bad CPU %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return 0, fmt.Errorf("bad CPU range %q", part)
			}
		}
		for i := a; i <= b; i++ {
			seen[i] = true
		}
	}
	return len(seen), nil
}
