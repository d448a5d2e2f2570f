//! Can this host boot a libkrun guest? msb_krun checks only the KVM API
//! version, which PVM's /dev/kvm passes; a stock guest kernel then dies in
//! KVM's instruction emulator after ~12 s. So look before booting.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

pub const KVM: &str = "/dev/kvm";

/// What the host check looks at, gathered by [`HostFacts::probe`] or made up in tests.
pub struct HostFacts {
    /// Opening /dev/kvm read-write: Ok, or the error kind and its text.
    pub kvm: Result<(), (ErrorKind, String)>,
    /// /proc/cpuinfo's text.
    pub cpuinfo: String,
    /// /sys/module/kvm_pvm exists.
    pub kvm_pvm: bool,
}

impl HostFacts {
    pub fn probe() -> HostFacts {
        HostFacts {
            kvm: OpenOptions::new()
                .read(true)
                .write(true)
                .open(KVM)
                .map(drop)
                .map_err(|e| (e.kind(), e.to_string())),
            cpuinfo: std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
            kvm_pvm: Path::new("/sys/module/kvm_pvm").exists(),
        }
    }

    /// The checks, in order; the first failure as a message.
    pub fn check(&self) -> Result<(), String> {
        match &self.kvm {
            Ok(()) => {}
            Err((ErrorKind::NotFound, _)) => {
                return Err(format!(
                    "{KVM} does not exist: KVM is not available on this host"
                ))
            }
            Err((ErrorKind::PermissionDenied, e)) => {
                return Err(format!(
                    "{KVM} cannot be opened read-write ({e}): run as a user with access to it"
                ))
            }
            Err((_, e)) => return Err(format!("{KVM} cannot be opened read-write: {e}")),
        }
        let hw = has_hw_virt_flag(&self.cpuinfo);
        let why = match (hw, self.kvm_pvm) {
            (true, false) => return Ok(()),
            (false, true) => {
                "/proc/cpuinfo has no vmx or svm flag and /dev/kvm is provided by kvm_pvm"
            }
            (false, false) => "/proc/cpuinfo has no vmx or svm flag",
            (true, true) => "/dev/kvm is provided by kvm_pvm (/sys/module/kvm_pvm exists)",
        };
        Err(format!(
            "hardware virtualization is missing: {why}; libkrun cannot boot a guest on this host (use the qemu backend)"
        ))
    }
}

/// A `flags` line of /proc/cpuinfo lists `vmx` (Intel) or `svm` (AMD).
pub fn has_hw_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == "flags"))
        .any(|(_, v)| v.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD_NO_SVM: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme de pse sse sse2 svm_lock lm\nbugs\t\t: sysret_ss_attrs\n";
    const AMD_SVM: &str = "processor\t: 0\nflags\t\t: fpu vme svm lm\n";
    const INTEL_VMX: &str =
        "processor\t: 0\nflags\t\t: fpu vmx ept\nvmx flags\t: vnmi preemption_timer\n";

    fn facts(cpuinfo: &str, kvm_pvm: bool) -> HostFacts {
        HostFacts {
            kvm: Ok(()),
            cpuinfo: cpuinfo.into(),
            kvm_pvm,
        }
    }

    #[test]
    fn flags() {
        assert!(has_hw_virt_flag(AMD_SVM));
        assert!(has_hw_virt_flag(INTEL_VMX));
        assert!(!has_hw_virt_flag(AMD_NO_SVM)); // svm_lock is not svm
        assert!(!has_hw_virt_flag("model name\t: vmx svm\n")); // only the flags line counts
        assert!(!has_hw_virt_flag("vmx flags\t: vmx\n"));
        assert!(!has_hw_virt_flag(""));
    }

    #[test]
    fn hardware_virtualization() {
        assert_eq!(facts(INTEL_VMX, false).check(), Ok(()));
        assert_eq!(facts(AMD_SVM, false).check(), Ok(()));
        assert_eq!(
            facts(AMD_NO_SVM, true).check().unwrap_err(),
            "hardware virtualization is missing: /proc/cpuinfo has no vmx or svm flag and /dev/kvm is provided by kvm_pvm; libkrun cannot boot a guest on this host (use the qemu backend)"
        );
        let e = facts(AMD_NO_SVM, false).check().unwrap_err();
        assert!(
            e.starts_with(
                "hardware virtualization is missing: /proc/cpuinfo has no vmx or svm flag;"
            ),
            "{e}"
        );
        let e = facts(AMD_SVM, true).check().unwrap_err();
        assert!(e.contains("provided by kvm_pvm"), "{e}");
    }

    #[test]
    fn kvm_device_comes_first() {
        let mut f = facts(INTEL_VMX, false);
        f.kvm = Err((ErrorKind::NotFound, "No such file or directory".into()));
        assert!(f.check().unwrap_err().contains("/dev/kvm does not exist"));
        f.kvm = Err((
            ErrorKind::PermissionDenied,
            "Permission denied (os error 13)".into(),
        ));
        assert!(f
            .check()
            .unwrap_err()
            .contains("cannot be opened read-write"));
        // A missing /dev/kvm is reported even where the virtualization check would fail too.
        let mut f = facts(AMD_NO_SVM, true);
        f.kvm = Err((ErrorKind::NotFound, String::new()));
        assert!(f.check().unwrap_err().contains("does not exist"));
    }
}
