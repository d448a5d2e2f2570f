//! The VM spec: mirrors `vm.Spec` in vm/spec.go (same JSON field names) and
//! its `Validate`, plus the checks that need the file system.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// Serial of the boot disk (`vm.BootDiskID`).
pub const BOOT_DISK_ID: &str = "msb-boot";
pub const MAX_VCPUS: u32 = 64;
pub const MIN_MEMORY_MIB: u32 = 64;
pub const MAX_MEMORY_MIB: u32 = 1 << 20;
/// Disks plus shares (`vm.MaxDisks`).
pub const MAX_DISKS: usize = 8;
const MAX_SERIAL: usize = 20;
const MAX_TAG: usize = 36;
/// `sun_path` holds 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 107;

// Unknown fields are ignored on purpose: the Go side may add fields first.
#[derive(Debug, Deserialize)]
pub struct Spec {
    pub vcpus: u32,
    pub memory_mib: u32,
    #[serde(default)]
    pub kernel: Kernel,
    #[serde(default, deserialize_with = "nullable")]
    pub kernel_args: Vec<String>,
    pub boot_disk: PathBuf,
    #[serde(default, deserialize_with = "nullable")]
    pub disks: Vec<Disk>,
    #[serde(default, deserialize_with = "nullable")]
    pub shares: Vec<Share>,
    /// The VM's NIC: a tap device in the network namespace the Go side
    /// starts msb-vmm in.
    #[serde(default)]
    pub net: Option<Net>,
    pub agent_socket: PathBuf,
    pub console_log: PathBuf,
    /// Read by main.rs from the raw JSON, before the spec is decoded.
    #[serde(default)]
    #[allow(dead_code)]
    pub error_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Kernel {
    #[serde(default)]
    pub krunfw: PathBuf,
    /// Used by the qemu backend only.
    #[serde(default)]
    #[allow(dead_code)]
    pub elf: PathBuf,
}

#[derive(Debug, Deserialize)]
pub struct Disk {
    pub id: String,
    pub path: PathBuf,
    pub format: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Deserialize)]
pub struct Net {
    pub tap: String,
}

#[derive(Debug, Deserialize)]
pub struct Share {
    pub tag: String,
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// Go writes a nil slice as `null` when a field lacks omitempty.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]*$`, vm.diskID.
fn valid_id(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl Spec {
    /// Everything that does not need the file system: `Spec.Validate` in
    /// vm/spec.go plus what msb-vmm needs on top (a krunfw path, share tags
    /// used once, a bindable socket path). All problems, joined by "; ".
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            errs.push(format!("vcpus {} out of range 1-{MAX_VCPUS}", self.vcpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            errs.push(format!(
                "memory {} MiB out of range {MIN_MEMORY_MIB}-{MAX_MEMORY_MIB}",
                self.memory_mib
            ));
        }
        for (name, path) in [
            ("boot disk", &self.boot_disk),
            ("agent socket", &self.agent_socket),
            ("console log", &self.console_log),
            ("kernel krunfw", &self.kernel.krunfw),
        ] {
            if !path.is_absolute() {
                errs.push(format!("{name} path {path:?} must be absolute"));
            }
        }
        if self.agent_socket.as_os_str().len() > MAX_SOCKET_PATH {
            errs.push(format!(
                "agent socket path {:?} is longer than {MAX_SOCKET_PATH} bytes",
                self.agent_socket
            ));
        }
        let n = self.disks.len() + self.shares.len();
        if n > MAX_DISKS {
            errs.push(format!(
                "{n} disks and shares exceed the limit of {MAX_DISKS}"
            ));
        }
        let mut seen = HashSet::from([BOOT_DISK_ID]);
        for d in &self.disks {
            if let Err(e) = d.validate(&mut seen) {
                errs.push(e);
            }
        }
        let mut tags = HashSet::new();
        for s in &self.shares {
            if !valid_id(&s.tag) || s.tag.len() > MAX_TAG {
                errs.push(format!("share tag {:?} is invalid", s.tag));
            } else if !tags.insert(s.tag.as_str()) {
                errs.push(format!("share tag {:?} is used twice", s.tag));
            }
            if !s.path.is_absolute() {
                errs.push(format!(
                    "share {:?} path {:?} must be absolute",
                    s.tag, s.path
                ));
            }
            if s.read_only {
                // msb_krun's virtio-fs has no read-only export: the runtime
                // serves what must be read-only from read-only host mounts.
                errs.push(format!(
                    "share {:?}: read_only cannot be enforced by libkrun's virtio-fs",
                    s.tag
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// The checks that need the file system; the first problem found.
    pub fn check_files(&self) -> Result<(), String> {
        regular_file("boot disk", &self.boot_disk)?;
        for d in &self.disks {
            regular_file(&format!("disk {:?}", d.id), &d.path)?;
        }
        regular_file("kernel krunfw", &self.kernel.krunfw)?;
        for s in &self.shares {
            directory(&format!("share {:?}", s.tag), &s.path)?;
        }
        for (name, path) in [
            ("agent socket", &self.agent_socket),
            ("console log", &self.console_log),
        ] {
            let parent = path.parent().unwrap_or(Path::new("/"));
            directory(&format!("{name} parent"), parent)?;
        }
        Ok(())
    }
}

impl Disk {
    fn validate<'a>(&'a self, seen: &mut HashSet<&'a str>) -> Result<(), String> {
        if !valid_id(&self.id) || self.id.len() > MAX_SERIAL {
            Err(format!(
                "disk id {:?} is invalid (letters, digits, . _ -, at most {MAX_SERIAL})",
                self.id
            ))
        } else if seen.contains(self.id.as_str()) {
            Err(format!("disk id {:?} is used twice", self.id))
        } else if !self.path.is_absolute() {
            Err(format!(
                "disk {:?} path {:?} must be absolute",
                self.id, self.path
            ))
        } else if self.format != "raw" {
            Err(format!(
                "disk {:?} format {:?} is not supported (raw)",
                self.id, self.format
            ))
        } else {
            seen.insert(&self.id);
            Ok(())
        }
    }
}

fn regular_file(name: &str, path: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{name} {path:?} is not a regular file")),
        Err(e) => Err(format!("{name} {path:?}: {e}")),
    }
}

fn directory(name: &str, path: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{name} {path:?} is not a directory")),
        Err(e) => Err(format!("{name} {path:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both written by json.Marshal of vm.Spec (vm/spec.go).
    const FULL: &str = include_str!("../testdata/spec-full.json");
    const MIN: &str = include_str!("../testdata/spec-min.json");

    fn parse(s: &str) -> Spec {
        serde_json::from_str(s).unwrap()
    }

    fn errors(f: impl FnOnce(&mut Spec)) -> String {
        let mut s = parse(FULL);
        f(&mut s);
        s.validate().unwrap_err()
    }

    #[test]
    fn parses_go_json() {
        let s = parse(FULL);
        assert_eq!((s.vcpus, s.memory_mib), (2, 512));
        assert_eq!(
            s.kernel.krunfw,
            Path::new("/usr/lib/x86_64-linux-gnu/libkrunfw.so.5")
        );
        assert_eq!(s.kernel_args, ["quiet", "msb.debug=1"]);
        assert_eq!(s.boot_disk, Path::new("/run/msb/sb1/boot.erofs"));
        assert_eq!(s.disks.len(), 2);
        assert_eq!(
            (s.disks[0].id.as_str(), s.disks[0].read_only),
            ("layer0", true)
        );
        assert_eq!(
            (
                s.disks[1].id.as_str(),
                s.disks[1].read_only,
                s.disks[1].format.as_str()
            ),
            ("rw", false, "raw")
        );
        assert_eq!(
            (s.shares[0].tag.as_str(), s.shares[0].read_only),
            ("vol0", false)
        );
        assert_eq!(s.agent_socket, Path::new("/run/msb/sb1/agent.sock"));
        assert_eq!(s.console_log, Path::new("/run/msb/sb1/console.log"));
        assert_eq!(
            s.error_file.as_deref(),
            Some(Path::new("/run/msb/sb1/vmm-error.json"))
        );
        assert_eq!(s.validate(), Ok(()));

        let m = parse(MIN); // omitempty fields absent
        assert!(m.kernel_args.is_empty() && m.disks.is_empty() && m.shares.is_empty());
        assert_eq!(m.error_file, None);
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn tolerates_additions_and_nulls() {
        let s = parse(
            &FULL
                .replacen('{', r#"{"future":{"x":1},"disks_v2":[],"#, 1)
                .replace(r#""elf":"#, r#""initrd":"/i","elf":"#),
        );
        assert_eq!(s.validate(), Ok(()));
        let s = parse(
            r#"{"vcpus":1,"memory_mib":64,"kernel":{"krunfw":"/k"},"kernel_args":null,"boot_disk":"/b","disks":null,"shares":null,"agent_socket":"/a","console_log":"/c"}"#,
        );
        assert!(s.disks.is_empty() && s.validate().is_ok());
        assert!(serde_json::from_str::<Spec>(r#"{"vcpus":1}"#).is_err()); // required fields
        assert!(
            serde_json::from_str::<Spec>(&FULL.replace(r#""vcpus":2"#, r#""vcpus":-1"#)).is_err()
        );
    }

    #[test]
    fn validation_errors() {
        assert_eq!(errors(|s| s.vcpus = 0), "vcpus 0 out of range 1-64");
        assert_eq!(errors(|s| s.vcpus = 65), "vcpus 65 out of range 1-64");
        assert_eq!(
            errors(|s| s.memory_mib = 63),
            "memory 63 MiB out of range 64-1048576"
        );
        assert_eq!(
            errors(|s| s.memory_mib = (1 << 20) + 1),
            "memory 1048577 MiB out of range 64-1048576"
        );
        assert_eq!(
            errors(|s| s.boot_disk = "boot.erofs".into()),
            r#"boot disk path "boot.erofs" must be absolute"#
        );
        assert_eq!(
            errors(|s| s.kernel.krunfw = "".into()),
            r#"kernel krunfw path "" must be absolute"#
        );
        assert!(
            errors(|s| s.agent_socket = format!("/{}", "s".repeat(107)).into())
                .contains("longer than 107 bytes")
        );
        assert_eq!(
            errors(|s| s.disks[1].id = "msb-boot".into()),
            r#"disk id "msb-boot" is used twice"#
        );
        assert_eq!(
            errors(|s| s.disks[1].id = "layer0".into()),
            r#"disk id "layer0" is used twice"#
        );
        for bad in ["", "-x", ".x", "a/b", "a b", "abcdefghijklmnopqrstu"] {
            assert!(
                errors(|s| s.disks[0].id = bad.into()).starts_with("disk id"),
                "{bad:?}"
            );
        }
        assert_eq!(
            errors(|s| s.disks[0].format = "qcow2".into()),
            r#"disk "layer0" format "qcow2" is not supported (raw)"#
        );
        assert_eq!(
            errors(|s| s.disks[0].path = "x".into()),
            r#"disk "layer0" path "x" must be absolute"#
        );
        assert_eq!(
            errors(|s| s.shares[0].tag = "a/b".into()),
            r#"share tag "a/b" is invalid"#
        );
        assert_eq!(
            errors(|s| s.shares[0].tag = "t".repeat(37)),
            format!("share tag {:?} is invalid", "t".repeat(37))
        );
        assert_eq!(
            errors(|s| s.shares.push(Share {
                tag: "vol0".into(),
                path: "/x".into(),
                read_only: false
            })),
            r#"share tag "vol0" is used twice"#
        );
        assert_eq!(
            errors(|s| s.shares[0].read_only = true),
            r#"share "vol0": read_only cannot be enforced by libkrun's virtio-fs"#
        );
        assert_eq!(
            errors(|s| {
                let d = || Disk {
                    id: String::new(),
                    path: "/d".into(),
                    format: "raw".into(),
                    read_only: false,
                };
                s.disks = (0..8)
                    .map(|i| Disk {
                        id: format!("d{i}"),
                        ..d()
                    })
                    .collect();
            }),
            "9 disks and shares exceed the limit of 8"
        );
        // Every problem is reported, like errors.Join.
        assert_eq!(
            errors(|s| {
                s.vcpus = 0;
                s.console_log = "c.log".into();
            }),
            r#"vcpus 0 out of range 1-64; console log path "c.log" must be absolute"#
        );
    }

    #[test]
    fn file_checks() {
        let dir = std::env::temp_dir().join(format!("msb-vmm-spec-{}", std::process::id()));
        fs::create_dir_all(dir.join("share")).unwrap();
        for f in ["boot.erofs", "layer0.erofs", "rw.img", "libkrunfw.so.5"] {
            fs::write(dir.join(f), "").unwrap();
        }
        let d = |f: &str| dir.join(f);
        let mut s = parse(FULL);
        s.boot_disk = d("boot.erofs");
        s.disks[0].path = d("layer0.erofs");
        s.disks[1].path = d("rw.img");
        s.kernel.krunfw = d("libkrunfw.so.5");
        s.shares[0].path = d("share");
        s.agent_socket = d("agent.sock");
        s.console_log = d("console.log");
        assert_eq!(s.check_files(), Ok(()));

        s.disks[1].path = d("missing.img");
        assert_eq!(
            s.check_files().unwrap_err(),
            format!(
                "disk \"rw\" {:?}: No such file or directory (os error 2)",
                d("missing.img")
            )
        );
        s.disks[1].path = d("share");
        assert!(s
            .check_files()
            .unwrap_err()
            .ends_with("is not a regular file"));
        s.disks[1].path = d("rw.img");
        s.shares[0].path = d("rw.img");
        assert!(s.check_files().unwrap_err().starts_with("share \"vol0\""));
        s.shares[0].path = d("share");
        s.kernel.krunfw = d("nope.so");
        assert!(s.check_files().unwrap_err().starts_with("kernel krunfw"));
        s.kernel.krunfw = d("libkrunfw.so.5");
        s.agent_socket = d("nodir/agent.sock");
        assert!(s
            .check_files()
            .unwrap_err()
            .starts_with("agent socket parent"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
