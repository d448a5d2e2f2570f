//! The VM, as msb_krun 0.1.42 builds it.

use std::os::fd::RawFd;

use msb_krun::{DiskImageFormat, Vm, VmBuilder};

use crate::spec::{Spec, BOOT_DISK_ID};

/// The guest finds the agent channel by this name under
/// /sys/class/virtio-ports/*/name (`api.PortName` in agent/api/mux.go).
pub const AGENT_PORT: &str = "msb.agent";
/// Virtio-mmio IRQs of the in-kernel IOAPIC (5-15).
const IRQS: usize = 11;
/// hvc0's console device, the agent port's console device, virtio-rng,
/// virtio-msb-vmgenid (always attached) and the boot disk.
const FIXED_DEVICES: usize = 5;

/// Builds the VM; `init` comes from `cmdline::compose`, `agent_fd` is the VM's
/// end of the agent socketpair (libkrun dups it in `enter()`).
pub fn build(spec: &Spec, init: &str, agent_fd: RawFd) -> msb_krun::Result<Vm> {
    // Above 11 devices the in-kernel IOAPIC runs out of pins; only then take
    // the userspace (split) irqchip, which lifts the limit to 59.
    let nics = usize::from(spec.net.is_some());
    let split_irqchip = FIXED_DEVICES + spec.disks.len() + spec.shares.len() + nics > IRQS;
    let mut b = VmBuilder::new()
        .machine(|m| {
            m.vcpus(spec.vcpus as u8) // validated: 1..=64
                .memory_mib(spec.memory_mib as usize)
                .msb_metrics(false)
                .balloon(false)
                .split_irqchip(split_irqchip)
        })
        .kernel(|k| k.krunfw_path(&spec.kernel.krunfw).init_path(init))
        .console(|c| {
            c.output(&spec.console_log)
                .port(AGENT_PORT, agent_fd, agent_fd)
        })
        .on_exit(|code| log::info!("VM exited with status {code}"));
    // One disk per closure, path() first: DiskBuilder::path() files the disk
    // before it with the id/read_only set so far.
    b = b.disk(|d| {
        d.path(&spec.boot_disk)
            .id(BOOT_DISK_ID)
            .read_only(true)
            .format(DiskImageFormat::Raw)
    });
    for disk in &spec.disks {
        b = b.disk(|d| {
            d.path(&disk.path)
                .id(&disk.id)
                .read_only(disk.read_only)
                .format(DiskImageFormat::Raw)
        });
    }
    for s in &spec.shares {
        b = b.fs(|f| f.tag(&s.tag).path(&s.path));
    }
    if let Some(net) = &spec.net {
        b = b.net(|n| n.tap(&net.tap));
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsRawFd;

    // build() touches no KVM, so it runs anywhere; it opens the disk images.
    #[test]
    fn builds_and_opens_disks() {
        let dir = std::env::temp_dir().join(format!("msb-vmm-vm-{}", std::process::id()));
        fs::create_dir_all(dir.join("share")).unwrap();
        for f in ["boot.erofs", "rw.img"] {
            fs::write(dir.join(f), vec![0u8; 4096]).unwrap();
        }
        let mut s: Spec = serde_json::from_str(include_str!("../testdata/spec-full.json")).unwrap();
        s.boot_disk = dir.join("boot.erofs");
        s.disks.truncate(1);
        s.disks[0].path = dir.join("rw.img");
        s.shares[0].path = dir.join("share");
        s.console_log = dir.join("console.log");
        let (_host, vm_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let init = crate::cmdline::compose(&s.kernel_args, None).unwrap();
        assert!(build(&s, &init, vm_end.as_raw_fd()).is_ok());

        s.disks[0].path = dir.join("missing.img");
        let e = build(&s, &init, vm_end.as_raw_fd())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("missing.img") || e.to_lowercase().contains("no such file"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
