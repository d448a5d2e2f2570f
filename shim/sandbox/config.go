package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/msb-runtime/msb/vm"
)

// Config is the runtime's configuration: /opt/msb/etc/msb.toml when it
// exists, then the runtime options containerd passes (CRI's
// `[…runtimes.msb.options] ConfigPath = …` or its TOML body), then the
// MSB_BACKEND environment variable.
type Config struct {
	// Backend: auto (krun with hardware virtualization, else qemu), krun, qemu.
	Backend string `toml:"backend"`
	// DefaultVCPUs and DefaultMemoryMiB size a VM whose spec sets no limits.
	DefaultVCPUs     uint32 `toml:"default_vcpus"`
	DefaultMemoryMiB uint32 `toml:"default_memory_mib"`
	// ShareDir holds the guest: kernel.elf, libkrunfw.so.5, boot.erofs.
	ShareDir string `toml:"share_dir"`
	// VMM, QEMU and Virtiofsd override the binaries' paths.
	VMM       string `toml:"vmm"`
	QEMU      string `toml:"qemu"`
	Virtiofsd string `toml:"virtiofsd"`
	// BootTimeout bounds VMM start → agent ready, e.g. "30s".
	BootTimeout string `toml:"boot_timeout"`
	// KernelArgs are appended to the guest kernel command line.
	KernelArgs []string `toml:"kernel_args"`
}

const systemConfig = vm.DefaultPrefix + "/etc/msb.toml"

func defaultConfig() Config {
	return Config{Backend: vm.BackendAuto, DefaultVCPUs: 1, DefaultMemoryMiB: 256, ShareDir: vm.DefaultShare()}
}

// loadConfig builds the configuration for one sandbox.
func LoadConfig(opts *anypb.Any) (Config, error) {
	c := defaultConfig()
	if b, err := os.ReadFile(systemConfig); err == nil {
		if err := toml.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("%s: %w", systemConfig, err)
		}
	}
	if opts != nil && opts.GetTypeUrl() != "" {
		v, err := typeurl.UnmarshalAny(opts)
		if err != nil {
			return c, fmt.Errorf("runtime options: %w", err)
		}
		switch ro := v.(type) {
		case *runtimeoptions.Options:
			if err := c.applyRuntimeOptions(ro); err != nil {
				return c, err
			}
		case *runcoptions.Options:
			if err := checkIOOwnerOnly(ro); err != nil {
				return c, err
			}
		default:
			return c, fmt.Errorf("runtime options of type %s are not msb's (use ConfigPath or a TOML body)", opts.GetTypeUrl())
		}
	}
	if b := os.Getenv("MSB_BACKEND"); b != "" {
		c.Backend = b
	}
	return c, nil
}

// checkIOOwnerOnly accepts runc's options when they only name the owner of
// the stdio pipes, which containerd's CRI sends for a container with a user
// namespace (client.WithUIDOwner): msb's stdio ends are the shim's, relayed
// into the guest, so the owner means nothing here; and the sandbox's task
// API endpoint, which CRI sends for a container of a sandbox-API pod (the
// shim that gets them is that endpoint). Any other runc option would be
// silently ignored, so it is refused.
func checkIOOwnerOnly(o *runcoptions.Options) error {
	rest := proto.Clone(o).(*runcoptions.Options)
	rest.IoUid, rest.IoGid = 0, 0
	rest.TaskApiAddress, rest.TaskApiVersion = "", 0
	if !proto.Equal(rest, &runcoptions.Options{}) {
		return fmt.Errorf("runc's runtime options (%v) mean nothing to msb (use ConfigPath or a TOML body)", rest)
	}
	return nil
}

func (c *Config) applyRuntimeOptions(ro *runtimeoptions.Options) error {
	body := ro.GetConfigBody()
	if p := ro.GetConfigPath(); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("runtime config: %w", err)
		}
		body = b
	}
	if err := toml.Unmarshal(body, c); err != nil {
		return fmt.Errorf("runtime config: %w", err)
	}
	return nil
}

func (c Config) vmOptions() (vm.Options, error) {
	o := vm.Options{Backend: c.Backend, VMM: c.VMM, QEMU: c.QEMU, Virtiofsd: c.Virtiofsd}
	if c.BootTimeout != "" {
		d, err := time.ParseDuration(c.BootTimeout)
		if err != nil {
			return o, fmt.Errorf("boot_timeout: %w", err)
		}
		o.BootTimeout = d
	}
	return o, nil
}

func (c Config) kernel() vm.Kernel {
	return vm.Kernel{ELF: filepath.Join(c.ShareDir, "kernel.elf"), Krunfw: filepath.Join(c.ShareDir, "libkrunfw.so.5")}
}

func (c Config) bootDisk() string { return filepath.Join(c.ShareDir, "boot.erofs") }

// AddressEnv tells the shim server its socket, which it removes itself
// when the sandbox API shuts it down: containerd removes the bundle, and
// with it what "shim delete" would read the socket from, before the shim
// has exited.
const AddressEnv = "MSB_SHIM_ADDRESS"

// OptionsFile holds, in a sandbox's bundle, the runtime options containerd
// gave the shim's bootstrap: the sandbox API's CreateSandbox carries none.
const OptionsFile = "msb-options.pb"

// ReadOptions reads the bundle's runtime options; nil when there are none.
func ReadOptions(bundle string) (*anypb.Any, error) {
	b, err := os.ReadFile(filepath.Join(bundle, OptionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtime options: %w", err)
	}
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("runtime options in %s: %w", bundle, err)
	}
	return &a, nil
}
