package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"

	"github.com/msb-runtime/msb/pool"
)

// warm_pool comes from $MSB_CONFIG's file as from any other; msb-pool and
// the shims read one configuration, so the pool's VMs and a sandbox's
// default VM have the same key.
func TestWarmPoolConfig(t *testing.T) {
	t.Setenv("MSB_BACKEND", "")
	p := filepath.Join(t.TempDir(), "pool.toml")
	if err := os.WriteFile(p, []byte("kernel_args = ['quiet']\n[warm_pool]\ncount = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(configEnv, p)
	c, err := LoadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, key, _, err := c.WarmVM()
	if err != nil {
		t.Fatal(err)
	}
	if !pc.Enabled() || pc.Count != 2 || pc.Socket != pool.DefaultSocket {
		t.Fatalf("warm_pool: %+v", pc)
	}
	if want := c.vmKey(c.DefaultVCPUs, c.DefaultMemoryMiB); key.VCPUs != want.VCPUs || key.MemoryMiB != want.MemoryMiB ||
		key.BootDisk != want.BootDisk || len(key.KernelArgs) != 1 {
		t.Errorf("pool key %+v, want the default VM's %+v", key, want)
	}
	// A runtime handler's own options override it, as any option.
	c, err = LoadConfig(optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("[warm_pool]\ncount = 0\n")}))
	if err != nil || c.WarmPool.Enabled() {
		t.Errorf("warm_pool off in the runtime options: %+v, %v", c.WarmPool, err)
	}
	t.Setenv(configEnv, "")
	if c, err := LoadConfig(nil); err != nil || c.WarmPool.Enabled() {
		t.Errorf("without $MSB_CONFIG the pool is off by default: %+v, %v", c.WarmPool, err)
	}
}
