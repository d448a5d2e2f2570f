package vm

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/msb-runtime/msb/agent/api"
)

// qemu runs QEMU's microvm machine: KVM where the host has hardware
// virtualization, TCG (software emulation) where it has none.
type qemu struct {
	opts Options
	kvm  bool
}

// tcgCacheMiB bounds TCG's translation cache, which is part of the VMM's
// memory on the host (VMMOverheadMiB): QEMU 7.2's default reserves 1 GiB,
// and a varied workload (find, sort, sha256sum, gzip over /usr in
// debian) grew it to 200 MiB and kept growing. With 64 MiB the same
// workload took 38.9 s, against 50.5 s with the default (one run each).
const tcgCacheMiB = 64

// tcgClock trusts the guest's TSC, which TCG derives from the host's
// monotonic clock: the kernel's clocksource watchdog, which would check
// it twice a second against a jiffies clock, only wakes the idle guest
// (253 local timer interrupts a second in an idle guest with it, 16
// without, measured), and each guest timer wakes QEMU several times.
const tcgClock = "tsc=reliable"

func (q *qemu) Name() string {
	if q.kvm {
		return "qemu (kvm)"
	}
	return "qemu (tcg)"
}

func (q *qemu) launch(ctx context.Context, spec *Spec, files runFiles) (*vmm, error) {
	if err := makeJailDir(files.jailDir()); err != nil {
		return nil, err
	}
	v := &vmm{name: "qemu", cmd: exec.Command(q.opts.QEMU, append(q.args(spec, files), qemuConfinement(files)...)...)}
	v.cmd.SysProcAttr = vmmNamespaces(spec, 0)
	deadline := time.Now().Add(q.opts.BootTimeout)
	for _, sh := range spec.Shares {
		sock := files.share(sh.Tag)
		cmd := virtiofsdCommand(q.opts, sh, sock)
		if err := v.addHelper(cmd, files.vmmLog, q.opts.DieWithParent); err != nil {
			v.killHelpers()
			return nil, err
		}
		if err := waitFile(sock, deadline, nil); err != nil {
			v.killHelpers()
			return nil, fmt.Errorf("virtiofsd for share %q: %w%s", sh.Tag, err, v.tails())
		}
	}
	if err := v.start(files.vmmLog, q.opts.DieWithParent); err != nil {
		return nil, err
	}
	return v, nil
}

// args builds the QEMU command line. Device order is fixed: the console
// first (hvc0), then the agent port, then the boot disk (/dev/vda) and the
// disks in spec order.
func (q *qemu) args(spec *Spec, files runFiles) []string {
	accel, cpu, extra := "tcg,tb-size="+strconv.Itoa(tcgCacheMiB), "max", "reboot=t "+tcgClock
	if q.kvm {
		accel, cpu, extra = "kvm", "host", "reboot=t"
	}
	mem := strconv.FormatUint(uint64(spec.MemoryMiB), 10) + "M"
	a := []string{
		"-M", "microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=off,memory-backend=mem",
		"-accel", accel, "-cpu", cpu,
		"-m", mem, "-smp", strconv.FormatUint(uint64(spec.VCPUs), 10),
		// vhost-user (virtio-fs) needs shared guest memory and modern
		// virtio-mmio; console and disks work the same on it.
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-device", "virtio-serial-device",
		"-chardev", "file,id=con0,path=" + qesc(files.console),
		"-device", "virtconsole,chardev=con0",
		"-chardev", "socket,id=agent,server=on,wait=off,path=" + qesc(spec.AgentSocket),
		"-device", "virtserialport,chardev=agent,name=" + api.PortName,
	}
	a = append(a, drive("boot", Disk{ID: BootDiskID, Path: spec.BootDisk, ReadOnly: true})...)
	for i, d := range spec.Disks {
		a = append(a, drive("d"+strconv.Itoa(i), d)...)
	}
	for i, sh := range spec.Shares {
		id := "fs" + strconv.Itoa(i)
		a = append(a, "-chardev", "socket,id="+id+",path="+qesc(files.share(sh.Tag)),
			"-device", "vhost-user-fs-device,chardev="+id+",tag="+sh.Tag)
	}
	if spec.Net != nil {
		// QEMU runs in spec.Net.NetNS (vm.Start), where the tap is.
		a = append(a, "-netdev", "tap,id=net0,ifname="+spec.Net.Tap+",script=no,downscript=no",
			"-device", "virtio-net-device,netdev=net0")
	}
	if spec.devices() < MaxDisks {
		// Free page reporting: what the guest frees goes back to the host
		// (60 MiB written to a container's /dev/shm and removed: the
		// VMM's guest RAM 89 MiB with it, 129 without, measured). It takes
		// a virtio-mmio transport only when one is left. As the 5th it has
		// IRQ 8, the RTC's, as any 5th device has: the guest's rtc_cmos
		// driver then fails its probe, which costs /dev/rtc0, which no
		// container is given; the kernel still reads the wall clock from
		// the CMOS at boot.
		a = append(a, "-device", "virtio-balloon-device,free-page-reporting=on")
	}
	return append(a, "-kernel", spec.Kernel.ELF, "-append", cmdline(spec, extra))
}

func drive(id string, d Disk) []string {
	ro := "off"
	if d.ReadOnly {
		ro = "on"
	}
	return []string{
		"-drive", "id=" + id + ",if=none,format=raw,readonly=" + ro + ",file=" + qesc(d.Path),
		"-device", "virtio-blk-device,drive=" + id + ",serial=" + d.ID,
	}
}

// qesc escapes a value for QEMU's comma-separated option syntax.
func qesc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// QEMUArgs is the command line the qemu backend runs for spec on this
// host; hack/bench boots its floor (an init that only reboots) with it, so
// the floor is the same machine.
func QEMUArgs(o Options, spec Spec) []string {
	q := &qemu{opts: o.withDefaults(), kvm: DetectHostVirt().Hardware}
	files := newRunFiles(&spec)
	files.console = spec.ConsoleLog // no shim copies a FIFO there
	return q.args(&spec, files)
}

// QEMUConfinedCommand is QEMUArgs's QEMU confined as the qemu backend
// confines it (confine.go): hack/bench times what confinement costs.
func QEMUConfinedCommand(o Options, spec Spec) (*exec.Cmd, error) {
	o = o.withDefaults()
	q := &qemu{opts: o, kvm: DetectHostVirt().Hardware}
	files := newRunFiles(&spec)
	files.console = spec.ConsoleLog
	if err := makeJailDir(files.jailDir()); err != nil {
		return nil, err
	}
	cmd := exec.Command(o.QEMU, append(q.args(&spec, files), qemuConfinement(files)...)...)
	cmd.SysProcAttr = vmmNamespaces(&spec, 0)
	return cmd, nil
}
