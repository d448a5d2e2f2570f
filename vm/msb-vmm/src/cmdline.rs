//! The guest kernel command line.
//!
//! msb_krun 0.1.42 composes it (api/vm.rs `build_kernel_cmdline`, then vmm's
//! `initial_kernel_cmdline`) as
//!
//! ```text
//! DEFAULT_KERNEL_CMDLINE[ <.cmdline()>][ $MSB_KRUN_KERNEL_CMDLINE] root=/dev/root init=<init_path>
//!  <krun env: KRUN_INIT=, KRUN_ENV=, ..., KRUN_BOOT_START_NS=> -- <exec args>
//! ```
//!
//! `.cmdline()` text lands *before* the crate's own `root=/dev/root`, and the
//! kernel keeps the last `root=`, so `root=/dev/vda` given there is lost (the
//! guest would panic: /dev/root names no block device and EROFS is no nodev
//! file system). `init_path` is the only caller text placed after it and is
//! pasted in verbatim, so our arguments ride on it: `init=/init root=/dev/vda
//! rootfstype=erofs ro <kernel_args>`. They come after the defaults
//! (`rootfstype=virtiofs rw`) and so win over them too.
//!
//! libkrun itself allows 16 KiB, but the x86 guest kernel keeps only
//! COMMAND_LINE_SIZE-1 = 2047 bytes and drops the rest silently.

use msb_krun_vmm::vmm_config::kernel_cmdline::DEFAULT_KERNEL_CMDLINE;

/// msb-agent's path on the boot disk.
pub const GUEST_INIT: &str = "/init";
/// Boot from the boot disk, the first virtio-blk device.
pub const BOOT_ARGS: [&str; 3] = ["root=/dev/vda", "rootfstype=erofs", "ro"];
pub const MAX_LEN: usize = 2047;
/// msb_krun appends this variable's value to the line (a debugging aid).
pub const DEBUG_ENV: &str = "MSB_KRUN_KERNEL_CMDLINE";

/// The value to pass to `KernelBuilder::init_path`, checked against the
/// length limit of the final line. `debug` is `$MSB_KRUN_KERNEL_CMDLINE`.
pub fn compose(kernel_args: &[String], debug: Option<&str>) -> Result<String, String> {
    for a in kernel_args {
        // Spaces would split an argument, '"' would swallow what follows, "--"
        // would hand the rest to init; libkrun rejects non-printable bytes.
        if a.is_empty() || a == "--" || !a.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return Err(format!(
                "kernel argument {a:?} is invalid (printable ASCII without spaces or '\"', not \"--\")"
            ));
        }
    }
    let init = [GUEST_INIT]
        .into_iter()
        .chain(BOOT_ARGS)
        .chain(kernel_args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let n = final_line(&init, debug).len();
    if n > MAX_LEN {
        return Err(format!(
            "kernel command line would be {n} bytes, more than the {MAX_LEN} the guest kernel keeps: shorten kernel_args"
        ));
    }
    Ok(init)
}

/// The longest line msb_krun 0.1.42 hands an x86_64 Linux guest for this
/// `init_path`, with no `.cmdline()`, no exec settings, no reserved vCPUs or
/// memory (none of which msb-vmm uses): KRUN_BOOT_START_NS gets 20 digits.
pub fn final_line(init_path: &str, debug: Option<&str>) -> String {
    let debug = debug.map(|d| format!(" {d}")).unwrap_or_default();
    let prolog = format!("{DEFAULT_KERNEL_CMDLINE}{debug} root=/dev/root init={init_path}");
    // Cmdline::insert_str adds one space before each later piece; the krun env
    // piece is " {} {} {} {} KRUN_BOOT_START_NS=…" with four empty fields, the
    // epilog " -- " with no exec args.
    format!("{prolog}      KRUN_BOOT_START_NS={}  -- ", u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn boots_from_the_boot_disk() {
        let init = compose(&args(&["quiet", "msb.debug=1"]), None).unwrap();
        assert_eq!(
            init,
            "/init root=/dev/vda rootfstype=erofs ro quiet msb.debug=1"
        );
        let line = final_line(&init, None);
        assert_eq!(
            line,
            "reboot=k panic=-1 panic_print=0 nomodule console=hvc0 rootfstype=virtiofs rw quiet \
             no-kvmapf krun.poweroff=i8042 root=/dev/root init=/init root=/dev/vda rootfstype=erofs \
             ro quiet msb.debug=1      KRUN_BOOT_START_NS=18446744073709551615  -- "
        );
        // The kernel keeps the last value of each parameter; ours come last before "--".
        let params: Vec<_> = line
            .split(" -- ")
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let last = |k: &str| params.iter().rev().find(|p| p.starts_with(k)).copied();
        assert_eq!(last("root="), Some("root=/dev/vda"));
        assert_eq!(last("rootfstype="), Some("rootfstype=erofs"));
        assert_eq!(last("init="), Some("init=/init"));
        assert!(params.iter().rposition(|p| *p == "ro") > params.iter().rposition(|p| *p == "rw"));
    }

    #[test]
    fn debug_env_counts() {
        let init = compose(&[], None).unwrap();
        assert_eq!(
            final_line(&init, Some("loglevel=7")).len(),
            final_line(&init, None).len() + " loglevel=7".len()
        );
    }

    #[test]
    fn length_limit() {
        let base = final_line(&compose(&[], None).unwrap(), None).len();
        // One argument of k bytes adds k+1 (its separator).
        let fill = |k: usize| vec![format!("x={}", "a".repeat(k - 2))];
        assert_eq!(
            final_line(&compose(&fill(MAX_LEN - base - 1), None).unwrap(), None).len(),
            MAX_LEN
        );
        let e = compose(&fill(MAX_LEN - base), None).unwrap_err();
        assert!(e.contains("would be 2048 bytes"), "{e}");
        // The debug variable counts too.
        assert!(compose(&fill(MAX_LEN - base - 1), Some("x")).is_err());
    }

    #[test]
    fn bad_arguments() {
        for bad in ["", "a b", "--", "x=\"y", "caf\u{e9}", "a\tb"] {
            assert!(compose(&args(&[bad]), None).is_err(), "{bad:?}");
        }
    }
}
