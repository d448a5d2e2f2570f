//! The jail msb-vmm runs libkrun in (docs/security.md). The guest kernel is
//! hostile, and libkrun serves its virtio devices (virtio-fs included) in
//! this process, so before anything of the guest runs msb-vmm gives itself
//! a view of the host that holds only what the VM needs, and drops what a
//! VMM does not need:
//!
//! - a mount namespace of its own (a slave of the shim's, so exports bound
//!   into the VM's share after boot still arrive) whose root is a small
//!   read-only tmpfs holding, at their own paths, the VM's run directory,
//!   its disks, its share, the kernel library and the device nodes a VMM
//!   opens (/dev/kvm, /dev/net/tun with a NIC, null, zero, random,
//!   urandom), and a procfs with the parts a container runtime hides hidden
//!   or read-only; the shim starts it as PID 1 of a PID namespace of its
//!   own, so that procfs shows no other process;
//! - no capability but those of a file server when the VM has a share
//!   (libkrun's virtio-fs serves files of any owner), none otherwise: not
//!   CAP_MKNOD (the guest makes no device nodes on the host), not
//!   CAP_NET_ADMIN (the tap is the shim's and owned by root), not
//!   CAP_SYS_ADMIN; the bounding set alike;
//! - no_new_privs, and a seccomp filter that refuses what a VMM never does
//!   (mounts, namespaces, module and kexec loading, ptrace, bpf, keys, ...)
//!   and every other ABI than x86_64's.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::spec::Spec;

/// One path of the host in the jail, at the same path.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    pub path: PathBuf,
    pub read_only: bool,
    /// With the mounts below it (the share's exports).
    pub recursive: bool,
}

/// What the jail holds and keeps.
#[derive(Debug)]
pub struct Plan {
    pub root: PathBuf,
    pub binds: Vec<Bind>,
    pub file_server: bool,
}

const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/kvm",
];

/// The jail of the VM `spec` describes, whose run directory is `run_dir`.
pub fn plan(spec: &Spec, run_dir: &Path) -> Plan {
    let bind = |p: &Path, read_only: bool, recursive: bool| Bind {
        path: p.to_path_buf(),
        read_only,
        recursive,
    };
    let mut binds = vec![
        bind(run_dir, false, false),
        bind(&spec.kernel.krunfw, true, false),
        bind(&spec.boot_disk, true, false),
    ];
    binds.extend(spec.disks.iter().map(|d| bind(&d.path, d.read_only, false)));
    binds.extend(spec.shares.iter().map(|s| bind(&s.path, false, true)));
    let mut devices: Vec<&str> = DEVICES.to_vec();
    if spec.net.is_some() {
        devices.push("/dev/net/tun");
    }
    binds.extend(devices.iter().map(|d| bind(Path::new(d), false, false)));
    Plan {
        root: run_dir.join("jail"),
        binds,
        file_server: !spec.shares.is_empty(),
    }
}

/// The OCI runtime spec's defaults (runc, containerd).
const PROC_READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
const PROC_MASKED: &[&str] = &[
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];

/// Capabilities of a file server (libkrun's virtio-fs, like virtiofsd).
const FILE_SERVER_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    2,  // CAP_DAC_READ_SEARCH
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    31, // CAP_SETFCAP
];

/// Enters the jail: the whole process (it must not have other threads
/// yet) from here on sees and may do only what the plan says.
pub fn enter(plan: &Plan) -> Result<(), String> {
    build_root(plan).map_err(|e| format!("jail: {e}"))?;
    pivot(&plan.root).map_err(|e| format!("jail: {e}"))?;
    let keep: &[u32] = if plan.file_server {
        FILE_SERVER_CAPS
    } else {
        &[]
    };
    drop_capabilities(keep).map_err(|e| format!("jail: capabilities: {e}"))?;
    crate::seccomp::install().map_err(|e| format!("jail: seccomp: {e}"))
}

fn build_root(plan: &Plan) -> io::Result<()> {
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) }).map_err(ctx("unshare"))?;
    mount(None, "/", None, libc::MS_SLAVE | libc::MS_REC, None).map_err(ctx("make / a slave"))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&plan.root)?;
    mount(
        Some("msb-vmm-jail"),
        &plan.root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755,size=1m,nr_inodes=4096"),
    )
    .map_err(ctx("mount the jail's tmpfs"))?;
    for b in &plan.binds {
        bind_into(&plan.root, b).map_err(ctx(&format!("bind {:?}", b.path)))?;
    }
    mount_proc(&plan.root.join("proc"))
}

fn bind_into(root: &Path, b: &Bind) -> io::Result<()> {
    let meta = match fs::metadata(&b.path) {
        Ok(m) => m,
        // A device this host lacks: the VMM says so itself if it needs it.
        Err(e) if e.kind() == io::ErrorKind::NotFound && b.path.starts_with("/dev") => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    let target = root.join(b.path.strip_prefix("/").unwrap_or(&b.path));
    let parent = target.parent().unwrap_or(root);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)?;
    if meta.is_dir() {
        fs::DirBuilder::new().mode(0o755).create(&target)?;
    } else {
        fs::File::create(&target)?;
    }
    let rec = if b.recursive { libc::MS_REC } else { 0 };
    mount(
        Some(path_str(&b.path)?),
        &target,
        None,
        libc::MS_BIND | rec,
        None,
    )?;
    if b.read_only {
        mount(
            None,
            &target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

fn mount_proc(proc: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o555).create(proc)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(Some("proc"), proc, Some("proc"), flags, None).map_err(ctx("mount proc"))?;
    for p in PROC_READ_ONLY {
        let t = proc.join(p);
        if t.exists() {
            mount(
                Some(path_str(&t)?),
                &t,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            mount(
                None,
                &t,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                None,
            )?;
        }
    }
    for p in PROC_MASKED {
        let t = proc.join(p);
        match fs::metadata(&t) {
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                &t,
                Some("tmpfs"),
                libc::MS_RDONLY | flags,
                Some("size=0"),
            )?,
            Ok(_) => mount(Some("/dev/null"), &t, None, libc::MS_BIND, None)?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// Makes root the process's root and forgets the old one; the jail's own
/// tmpfs becomes read-only.
fn pivot(root: &Path) -> io::Result<()> {
    let old = root.join(".old");
    fs::DirBuilder::new().mode(0o700).create(&old)?;
    let (r, o) = (cstr(root)?, cstr(&old)?);
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, r.as_ptr(), o.as_ptr()) as i32 })
        .map_err(ctx("pivot_root"))?;
    std::env::set_current_dir("/")?;
    cvt(unsafe { libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH) })
        .map_err(ctx("detach the old root"))?;
    fs::remove_dir("/.old")?;
    mount(
        None,
        "/",
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
    .map_err(ctx("make the jail read-only"))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Keeps only `keep` in every set, bounding and ambient included.
fn drop_capabilities(keep: &[u32]) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.contains(&cap) {
            continue;
        }
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            break; // past the kernel's last capability
        }
        cvt(r)?;
    }
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })?;
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let d = &mut data[(cap / 32) as usize];
        d.effective |= 1 << (cap % 32);
        d.permitted |= 1 << (cap % 32);
    }
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    cvt(unsafe {
        libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) as i32
    })?;
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

fn mount(
    src: Option<&str>,
    target: impl AsRef<Path>,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let opt = |s: Option<&str>| {
        s.map(|s| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput)))
            .transpose()
    };
    let (src, fstype, data) = (opt(src)?, opt(fstype)?, opt(data)?);
    let target = cstr(target.as_ref())?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    cvt(unsafe {
        libc::mount(
            p(&src),
            target.as_ptr(),
            p(&fstype),
            flags,
            p(&data) as *const libc::c_void,
        )
    })
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(path_str(p)?).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: i32) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn ctx(what: &str) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn spec_in(dir: &Path, net: bool) -> Spec {
        for f in ["krunfw.so", "boot.erofs", "layer.erofs", "rw.img"] {
            fs::write(dir.join(f), b"x").unwrap();
        }
        fs::create_dir_all(dir.join("share/c1")).unwrap();
        fs::write(dir.join("share/c1/f"), b"shared").unwrap();
        fs::create_dir_all(dir.join("run")).unwrap();
        let d = |p: &str| dir.join(p).to_str().unwrap().to_owned();
        let json = format!(
            r#"{{"vcpus":1,"memory_mib":64,"kernel":{{"krunfw":"{}"}},"boot_disk":"{}",
            "disks":[{{"id":"l","path":"{}","format":"raw","read_only":true}},{{"id":"rw","path":"{}","format":"raw"}}],
            "shares":[{{"tag":"msb","path":"{}"}}],{}"agent_socket":"{}","console_log":"{}"}}"#,
            d("krunfw.so"),
            d("boot.erofs"),
            d("layer.erofs"),
            d("rw.img"),
            d("share"),
            if net {
                r#""net":{"tap":"msbtap0"},"#
            } else {
                ""
            },
            d("run/agent.sock"),
            d("run/console.pipe")
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn plan_holds_what_the_vm_needs() {
        let dir = std::env::temp_dir().join(format!("msb-jail-plan-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let spec = spec_in(&dir, true);
        let p = plan(&spec, &dir.join("run"));
        let paths: Vec<_> = p
            .binds
            .iter()
            .map(|b| b.path.to_str().unwrap().to_owned())
            .collect();
        for want in [
            "run",
            "krunfw.so",
            "boot.erofs",
            "layer.erofs",
            "rw.img",
            "share",
        ] {
            assert!(
                paths.iter().any(|p| p.ends_with(want)),
                "{want} missing from {paths:?}"
            );
        }
        assert!(
            paths.contains(&"/dev/net/tun".to_owned()) && paths.contains(&"/dev/kvm".to_owned())
        );
        assert!(p
            .binds
            .iter()
            .any(|b| b.path.ends_with("layer.erofs") && b.read_only));
        assert!(p
            .binds
            .iter()
            .any(|b| b.path.ends_with("rw.img") && !b.read_only));
        assert!(p
            .binds
            .iter()
            .any(|b| b.path.ends_with("share") && b.recursive));
        assert!(p.file_server);
        let q = plan(&spec_in(&dir, false), &dir.join("run"));
        assert!(!q.binds.iter().any(|b| b.path == Path::new("/dev/net/tun")));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What the jailed process sees and may do: checked in a child that is
    /// PID 1 of a PID namespace of its own, as msb-vmm runs. Needs root.
    #[test]
    fn jailed_process() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("jailed_process: skipped, needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("msb-jail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let spec = spec_in(&dir, false);
        let p = plan(&spec, &dir.join("run"));
        let status = in_pid_namespace(|| check_jail(&p, &dir));
        fs::remove_dir_all(&dir).ok();
        assert_eq!(
            status, 0,
            "the jailed child reported problems (exit status {status}, see stderr)"
        );
    }

    /// Runs f in a grandchild that is PID 1 of a new PID namespace and
    /// returns its exit status.
    fn in_pid_namespace(f: impl FnOnce() -> i32) -> i32 {
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                if libc::unshare(libc::CLONE_NEWPID) != 0 {
                    libc::_exit(90);
                }
                let child = libc::fork();
                if child == 0 {
                    libc::_exit(f());
                }
                let mut st = 0;
                libc::waitpid(child, &mut st, 0);
                libc::_exit(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    91
                });
            }
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                92
            }
        }
    }

    fn check_jail(p: &Plan, dir: &Path) -> i32 {
        if let Err(e) = enter(p) {
            eprintln!("enter: {e}");
            return 1;
        }
        let mut bad = 0;
        let mut check = |ok: bool, what: &str| {
            if !ok {
                eprintln!("jail: {what}");
                bad = 2;
            }
        };
        let top: Vec<String> = fs::read_dir("/")
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let first = dir
            .components()
            .nth(1)
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .to_owned();
        check(
            top.iter()
                .all(|n| ["dev", "proc", first.as_str()].contains(&n.as_str())),
            &format!("/ holds {top:?}"),
        );
        check(
            !Path::new("/etc/passwd").exists() && !Path::new("/root").exists(),
            "the host's /etc or /root is visible",
        );
        check(
            fs::read(dir.join("share/c1/f"))
                .map(|b| b == b"shared")
                .unwrap_or(false),
            "the share is not readable",
        );
        check(
            fs::write(dir.join("layer.erofs"), b"y").is_err(),
            "a read-only disk is writable",
        );
        check(
            fs::write(dir.join("rw.img"), b"y").is_ok(),
            "the writable disk is not writable",
        );
        check(
            fs::write("/proc/sys/kernel/hostname", b"x").is_err(),
            "/proc/sys is writable",
        );
        check(
            fs::read_dir("/proc")
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_str()
                        .unwrap()
                        .parse::<u32>()
                        .is_ok()
                })
                .count()
                == 1,
            "procfs shows other processes",
        );
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
                .unwrap_or_default()
        };
        check(field("NoNewPrivs:") == "1", "no_new_privs is not set");
        check(field("Seccomp:") == "2", "no seccomp filter");
        let want: u64 = FILE_SERVER_CAPS.iter().map(|c| 1u64 << c).sum();
        check(
            u64::from_str_radix(&field("CapEff:"), 16).unwrap() == want,
            &format!("CapEff {}", field("CapEff:")),
        );
        check(
            u64::from_str_radix(&field("CapBnd:"), 16).unwrap() == want,
            &format!("CapBnd {}", field("CapBnd:")),
        );
        let r = unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/proc".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        check(r != 0, "mount works");
        let r = unsafe {
            libc::mknod(
                c"/proc/x".as_ptr(),
                libc::S_IFCHR | 0o600,
                libc::makedev(1, 1),
            )
        };
        check(r != 0, "mknod works");
        bad
    }
}
