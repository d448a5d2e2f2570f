// Package vm starts and supervises the microVM of one sandbox behind one
// spec and two backends: krun (msb-vmm on libkrun, production) and qemu
// (QEMU microvm, KVM where the host has hardware virtualization, TCG where
// it has none). Both boot the same guest: libkrunfw5's kernel and msb-agent.
package vm

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
)

// Spec describes one VM. It is also the JSON that msb-vmm reads, so field
// names are part of that contract (vm/msb-vmm/src/spec.rs mirrors them).
type Spec struct {
	VCPUs     uint32 `json:"vcpus"`
	MemoryMiB uint32 `json:"memory_mib"`
	Kernel    Kernel `json:"kernel"`
	// KernelArgs are appended to the backend's base command line.
	KernelArgs []string `json:"kernel_args,omitempty"`
	// BootDisk is the read-only EROFS image whose /init is msb-agent; it is
	// always the first disk (/dev/vda, serial BootDiskID).
	BootDisk string  `json:"boot_disk"`
	Disks    []Disk  `json:"disks,omitempty"`
	Shares   []Share `json:"shares,omitempty"`
	// Net is the VM's network interface, if it has one.
	Net *Net `json:"net,omitempty"`
	// AgentSocket is the host unix socket bridged to the guest's agent
	// port (virtio-console port api.PortName). The VMM listens on it.
	AgentSocket string `json:"agent_socket"`
	// ConsoleLog receives the guest console (hvc0). The VMM writes it to
	// a FIFO next to it; vm.Start keeps the newest ConsoleLogMax bytes.
	ConsoleLog string `json:"console_log"`
	// Host bounds what the VM takes of the host; the shim's business, not
	// msb-vmm's.
	Host HostLimits `json:"-"`
	// ErrorFile is where msb-vmm writes {"error": "..."} when it cannot
	// boot; unused by qemu.
	ErrorFile string `json:"error_file,omitempty"`
}

// Kernel names libkrunfw5's kernel in the form each backend needs.
type Kernel struct {
	// Krunfw is libkrunfw.so.5 (krun loads the kernel from it).
	Krunfw string `json:"krunfw,omitempty"`
	// ELF is the same kernel wrapped for a PVH boot (qemu).
	ELF string `json:"elf,omitempty"`
}

// Disk is one virtio-blk disk; the guest finds it by its serial, ID.
type Disk struct {
	ID       string `json:"id"`
	Path     string `json:"path"`
	Format   string `json:"format"` // "raw"
	ReadOnly bool   `json:"read_only"`
}

// Share is one virtio-fs share of a host directory, served writable: the
// runtime makes read-only what must be (read-only mounts under Path), so
// the host enforces it whatever the guest sends (package share).
type Share struct {
	Tag  string `json:"tag"`
	Path string `json:"path"`
}

// Net is one virtio-net device backed by a tap device. The VMM runs in
// the network namespace NetNS, where the tap is; the host mirrors the
// namespace's own interface to the tap, so the guest takes its address.
type Net struct {
	NetNS string `json:"netns"`
	Tap   string `json:"tap"`
}

// devices counts the disks, shares and NICs that share MaxDisks.
func (s *Spec) devices() int {
	n := len(s.Disks) + len(s.Shares)
	if s.Net != nil {
		n++
	}
	return n
}

// BootDiskID is the serial of the boot disk.
const BootDiskID = "msb-boot"

// Limits a spec must respect on both backends.
const (
	MaxVCPUs = 64
	// MinMemoryMiB is what the kernel and agent need to boot at all.
	MinMemoryMiB = 64
	MaxMemoryMiB = 1 << 20
	// MaxDisks bounds the disks, shares and NIC beside the boot disk and the
	// console: QEMU's microvm has 8 virtio-mmio transports (without ACPI
	// there is no second IOAPIC for more), and on libkrun every device
	// must fit the in-kernel IOAPIC's IRQs too.
	MaxDisks = 6
	// maxSerial is virtio-blk's serial length.
	maxSerial = 20
)

var diskID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks everything that does not need the file system.
func (s *Spec) Validate() error {
	var errs []error
	if s.VCPUs < 1 || s.VCPUs > MaxVCPUs {
		errs = append(errs, fmt.Errorf("vcpus %d out of range 1-%d", s.VCPUs, MaxVCPUs))
	}
	if s.MemoryMiB < MinMemoryMiB || s.MemoryMiB > MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("memory %d MiB out of range %d-%d", s.MemoryMiB, MinMemoryMiB, MaxMemoryMiB))
	}
	for _, p := range []struct{ name, path string }{
		{"boot disk", s.BootDisk}, {"agent socket", s.AgentSocket}, {"console log", s.ConsoleLog},
	} {
		if !filepath.IsAbs(p.path) {
			errs = append(errs, fmt.Errorf("%s path %q must be absolute", p.name, p.path))
		}
	}
	if s.devices() > MaxDisks {
		errs = append(errs, fmt.Errorf("%d disks, shares and NICs exceed the limit of %d", s.devices(), MaxDisks))
	}
	if s.Net != nil && (!filepath.IsAbs(s.Net.NetNS) || !diskID.MatchString(s.Net.Tap) || len(s.Net.Tap) > 15) {
		errs = append(errs, fmt.Errorf("network: netns %q must be an absolute path and tap %q a device name", s.Net.NetNS, s.Net.Tap))
	}
	if err := s.Host.validate(); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{BootDiskID: true}
	for _, d := range s.Disks {
		errs = append(errs, d.validate(seen))
	}
	for _, sh := range s.Shares {
		if !diskID.MatchString(sh.Tag) || len(sh.Tag) > 36 {
			errs = append(errs, fmt.Errorf("share tag %q is invalid", sh.Tag))
		}
		if !filepath.IsAbs(sh.Path) {
			errs = append(errs, fmt.Errorf("share %q path %q must be absolute", sh.Tag, sh.Path))
		}
	}
	return errors.Join(errs...)
}

func (d Disk) validate(seen map[string]bool) error {
	switch {
	case !diskID.MatchString(d.ID) || len(d.ID) > maxSerial:
		return fmt.Errorf("disk id %q is invalid (letters, digits, . _ -, at most %d)", d.ID, maxSerial)
	case seen[d.ID]:
		return fmt.Errorf("disk id %q is used twice", d.ID)
	case !filepath.IsAbs(d.Path):
		return fmt.Errorf("disk %q path %q must be absolute", d.ID, d.Path)
	case d.Format != "raw":
		return fmt.Errorf("disk %q format %q is not supported (raw)", d.ID, d.Format)
	}
	seen[d.ID] = true
	return nil
}
