//! msb-vmm's seccomp filter: a deny list of what a VMM never does once it
//! is jailed (jail.rs), so that code running in it after a guest exploited
//! libkrun cannot reach the kernel's riskier interfaces. Everything else is
//! allowed: libkrun's own needs (KVM ioctls, threads, epoll, file serving)
//! are left alone. Any ABI but x86_64's (i386, x32) kills the process.

use std::io;

/// seccomp_data offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0: u32 = 16;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

/// Refused with EPERM.
const DENIED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_syslog,
    libc::SYS_lookup_dcookie,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_quotactl,
    libc::SYS_vhangup,
    libc::SYS_uselib,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_fanotify_init,
];

/// clone flags that make namespaces: refused (unshare and setns are).
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The filter program.
fn program() -> Vec<Insn> {
    let eperm = RET_ERRNO | libc::EPERM as u32;
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, RET_KILL_PROCESS),
    ];
    for &nr in DENIED {
        p.push(jump(JEQ_K, nr as u32, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    // clone3 passes its flags in memory: ENOSYS makes libc fall back to
    // clone, whose flags the filter sees.
    p.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    p.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 3));
    p.push(stmt(LD_W_ABS, ARG0));
    p.push(jump(JSET_K, NAMESPACE_FLAGS, 0, 1));
    p.push(stmt(RET_K, eperm));
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const Insn,
}

/// Installs the filter on every thread of the process (no_new_privs must
/// be set).
pub fn install() -> io::Result<()> {
    let prog = program();
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
    // SAFETY: fprog points at prog, which outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const SockFprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the filter uses.
    fn run(p: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    a = u32::from_le_bytes(data[i.k as usize..i.k as usize + 4].try_into().unwrap())
                }
                RET_K => return i.k,
                JEQ_K | JGE_K | JSET_K => {
                    let t = match i.code {
                        JEQ_K => a == i.k,
                        JGE_K => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                c => panic!("unknown instruction {c:#x}"),
            }
        }
    }

    #[test]
    fn decisions() {
        let p = program();
        assert!(p.len() < 4096);
        let x = AUDIT_ARCH_X86_64;
        let eperm = RET_ERRNO | libc::EPERM as u32;
        assert_eq!(run(&p, x, libc::SYS_read as u32, 0), RET_ALLOW);
        assert_eq!(run(&p, x, libc::SYS_ioctl as u32, 0), RET_ALLOW);
        for &nr in DENIED {
            assert_eq!(run(&p, x, nr as u32, 0), eperm, "syscall {nr}");
        }
        assert_eq!(
            run(&p, x, libc::SYS_clone as u32, libc::CLONE_THREAD as u64),
            RET_ALLOW
        );
        assert_eq!(
            run(&p, x, libc::SYS_clone as u32, libc::CLONE_NEWUSER as u64),
            eperm
        );
        assert_eq!(
            run(&p, x, libc::SYS_clone3 as u32, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&p, 0x4000_0003, libc::SYS_read as u32, 0),
            RET_KILL_PROCESS
        ); // i386
        assert_eq!(run(&p, x, X32_SYSCALL_BIT | 0, 0), RET_KILL_PROCESS);
    }
}
