// Package pool keeps VMs booted ahead of their use: a per-host warm pool
// (msb-pool) of idle VMs, each with its agent up, an empty share and a NIC
// whose tap waits in a network namespace of its own, and the claim
// protocol with which a shim takes one over for its sandbox instead of
// booting one (docs/design.md, "Warm VMs").
//
// A VM in the pool is booted and confined by package vm exactly as a
// shim's, and runs in a host cgroup of its own below the pool's, which has
// the least CPU weight: the pool refills when the host has time to spare.
// A claim hands the claiming shim the VM's processes (pidfds), its agent
// connection, console, share (a copy of its mount) and network namespace
// over the pool's socket; the shim records the VM in its bundle, moves it
// into its sandbox's host cgroup and acknowledges, and the pool forgets it
// (but reaps its processes, being their parent). Each VM serves one
// sandbox and is destroyed after it; a claim that fails half-way destroys
// the VM.
package pool

import (
	"fmt"
	"slices"

	"github.com/msb-runtime/msb/vm"
)

// Config is the runtime option warm_pool (msb.toml), read by msb-pool and
// by the shim: the pool is on when Count > 0.
type Config struct {
	// Count is how many idle VMs the pool keeps.
	Count int `toml:"count"`
	// VCPUs and MemoryMiB size every VM of the pool; a sandbox whose VM
	// would be of exactly this size claims one.
	VCPUs     uint32 `toml:"vcpus"`
	MemoryMiB uint32 `toml:"memory_mib"`
	// Socket is where msb-pool serves claims.
	Socket string `toml:"socket"`
	// CgroupParent is the host cgroup the pool's VMs run below until they
	// are claimed ("" for msb.pool below msb-pool's own cgroup).
	CgroupParent string `toml:"cgroup_parent"`
}

// Root holds the pool's socket, its VMs' run and share directories and
// its records of them.
const Root = "/run/msb/pool"

// DefaultSocket is where msb-pool serves claims by default.
const DefaultSocket = Root + "/pool.sock"

// Enabled says whether the pool is on.
func (c Config) Enabled() bool { return c.Count > 0 }

// WithDefaults fills in what the configuration leaves out.
func (c Config) WithDefaults(defaultVCPUs, defaultMemoryMiB uint32) Config {
	if c.VCPUs == 0 {
		c.VCPUs = defaultVCPUs
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = defaultMemoryMiB
	}
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	return c
}

// VMKey is everything that makes two VMs interchangeable: a sandbox claims
// a pooled VM only when the VM it would boot has the same key.
type VMKey struct {
	VCPUs      uint32    `json:"vcpus"`
	MemoryMiB  uint32    `json:"memory_mib"`
	Backend    string    `json:"backend"`
	Kernel     vm.Kernel `json:"kernel"`
	BootDisk   string    `json:"boot_disk"`
	KernelArgs []string  `json:"kernel_args,omitempty"`
	VMM        string    `json:"vmm,omitempty"`
	QEMU       string    `json:"qemu,omitempty"`
	Virtiofsd  string    `json:"virtiofsd,omitempty"`
}

// mismatch says how k, a sandbox's VM, differs from the pool's, or ""
// when they are the same.
func (k VMKey) mismatch(pool VMKey) string {
	switch {
	case k.VCPUs != pool.VCPUs || k.MemoryMiB != pool.MemoryMiB:
		return fmt.Sprintf("the sandbox's VM has %d vCPUs and %d MiB, the pool's %d and %d",
			k.VCPUs, k.MemoryMiB, pool.VCPUs, pool.MemoryMiB)
	case k.Backend != pool.Backend || k.VMM != pool.VMM || k.QEMU != pool.QEMU || k.Virtiofsd != pool.Virtiofsd:
		return "the sandbox's runtime configuration names another backend or VMM than the pool's"
	case k.Kernel != pool.Kernel || k.BootDisk != pool.BootDisk || !slices.Equal(k.KernelArgs, pool.KernelArgs):
		return "the sandbox's runtime configuration names another guest kernel, boot disk or kernel arguments than the pool's"
	}
	return ""
}
