package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Backend names.
const (
	BackendAuto = "auto"
	BackendKrun = "krun"
	BackendQEMU = "qemu"
)

// Options say how to run VMs on this host; they come from the runtime
// options in the containerd config, with defaults for everything.
type Options struct {
	// Backend is auto (krun where the host has hardware virtualization,
	// else qemu), krun or qemu.
	Backend string
	// VMM is the msb-vmm binary (krun backend).
	VMM string
	// QEMU is qemu-system-x86_64; Virtiofsd the virtio-fs daemon (qemu),
	// the Rust virtiofsd that hack/setup builds; Jail is msb-jail, which
	// starts it in namespaces of its own.
	QEMU      string
	Virtiofsd string
	Jail      string
	// DieWithParent makes the VMM die with the process that started it.
	// Tests want that; the shim does not, so a shim crash keeps the VM.
	DieWithParent bool
	// BootTimeout bounds VMM start → agent answering.
	BootTimeout time.Duration
	// StopTimeout bounds a clean shutdown before the VMM is killed.
	StopTimeout time.Duration
}

// Default paths, relative to the prefix hack/setup installs into.
const (
	DefaultPrefix = "/opt/msb"
	defaultQEMU   = "/usr/bin/qemu-system-x86_64"
	defaultVFSD   = DefaultPrefix + "/virtiofsd/bin/virtiofsd"
	defaultJail   = DefaultPrefix + "/bin/msb-jail"
)

func (o Options) withDefaults() Options {
	if o.Backend == "" {
		o.Backend = BackendAuto
	}
	if o.VMM == "" {
		o.VMM = filepath.Join(DefaultPrefix, "bin", "msb-vmm")
	}
	if o.QEMU == "" {
		o.QEMU = defaultQEMU
	}
	if o.Virtiofsd == "" {
		o.Virtiofsd = defaultVFSD
	}
	if o.Jail == "" {
		o.Jail = defaultJail
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 30 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	return o
}

// SelectBackend resolves Options.Backend on this host.
func SelectBackend(o Options, host HostVirt) (Backend, error) {
	o = o.withDefaults()
	switch o.Backend {
	case BackendKrun:
		return &krun{opts: o}, nil
	case BackendQEMU:
		return &qemu{opts: o, kvm: host.Hardware}, nil
	case BackendAuto:
		if host.Hardware {
			return &krun{opts: o}, nil
		}
		return &qemu{opts: o}, nil
	}
	return nil, fmt.Errorf("unknown VM backend %q (auto, krun or qemu)", o.Backend)
}

// DefaultShare is where hack/setup puts the guest artifacts; MSB_SHARE
// overrides it.
func DefaultShare() string {
	if d := os.Getenv("MSB_SHARE"); d != "" {
		return d
	}
	return filepath.Join(DefaultPrefix, "share", "msb")
}
