package sandbox

import (
	"os"

	"github.com/msb-runtime/msb/pool"
	"github.com/msb-runtime/msb/vm"
)

// configEnv names a configuration file read after the system's: the test
// instance's warm pool is configured with it (hack/containerd-test).
const configEnv = "MSB_CONFIG"

func configFiles() []string {
	files := []string{systemConfig}
	if p := os.Getenv(configEnv); p != "" {
		files = append(files, p)
	}
	return files
}

// WarmVM is what msb-pool boots for this configuration: the pool's size,
// the key a sandbox's VM must match to claim one of its VMs, and how to
// run them.
func (c Config) WarmVM() (pool.Config, pool.VMKey, vm.Options, error) {
	pc := c.WarmPool.WithDefaults(c.DefaultVCPUs, c.DefaultMemoryMiB)
	opts, err := c.vmOptions()
	return pc, c.vmKey(pc.VCPUs, pc.MemoryMiB), opts, err
}

// vmKey is the key of a VM of this configuration and size.
func (c Config) vmKey(vcpus, memMiB uint32) pool.VMKey {
	return pool.VMKey{
		VCPUs: vcpus, MemoryMiB: memMiB, Backend: c.Backend, Kernel: c.kernel(), BootDisk: c.bootDisk(),
		KernelArgs: c.KernelArgs, VMM: c.VMM, QEMU: c.QEMU, Virtiofsd: c.Virtiofsd,
	}
}
