//! msb-vmm: boots one microVM with libkrun (msb_krun) from a vm.Spec JSON file.
//!
//! `msb-vmm --spec FILE [--die-with-parent]`. Any failure before the guest
//! runs writes `{"error":"<message>"}` to the spec's error_file (when set) and
//! to stderr, and exits with status 2. Once the VM is entered the process
//! exits with the guest's status.

mod bridge;
mod check;
mod cmdline;
mod error;
mod jail;
mod seccomp;
mod spec;
mod vm;

use std::convert::Infallible;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::exit;
use std::sync::OnceLock;
use std::{fs, panic};

use anyhow::{anyhow, bail, Context};

use crate::spec::Spec;

const USAGE: &str = "usage: msb-vmm --spec FILE [--die-with-parent]";
/// Status for every failure before the guest runs.
const EXIT_FAILED: i32 = 2;

static ERROR_FILE: OnceLock<PathBuf> = OnceLock::new();

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,msb_vmm=info"),
    )
    .init();
    // msb_krun panics on some errors (a vanished /dev/kvm, ...): report those too.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        default_hook(info);
        if let Some(path) = ERROR_FILE.get() {
            let _ = error::write_file(path, &format!("msb-vmm {info}"));
        }
    }));
    match panic::catch_unwind(run) {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => fail(&format!("{e:#}")),
        Err(_) => exit(EXIT_FAILED),
    }
}

fn fail(msg: &str) -> ! {
    if let Some(path) = ERROR_FILE.get() {
        if let Err(e) = error::write_file(path, msg) {
            eprintln!("msb-vmm: cannot write error file {path:?}: {e}");
        }
    }
    eprintln!("{}", error::json(msg));
    exit(EXIT_FAILED)
}

struct Args {
    spec: PathBuf,
    die_with_parent: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let (mut spec, mut die_with_parent) = (None, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--spec" => spec = Some(it.next().context(USAGE)?.into()),
            "--die-with-parent" => die_with_parent = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            _ => match a.strip_prefix("--spec=") {
                Some(v) => spec = Some(v.into()),
                None => bail!("unknown argument {a:?}; {USAGE}"),
            },
        }
    }
    Ok(Args {
        spec: spec.context(USAGE)?,
        die_with_parent,
    })
}

fn run() -> anyhow::Result<Infallible> {
    let args = parse_args(std::env::args().skip(1))?;
    let text = fs::read_to_string(&args.spec).with_context(|| format!("spec {:?}", args.spec))?;
    let value: serde_json::Value = serde_json::from_str(&text).context("spec")?;
    // Learn the error file first, so that a spec that does not decode is reported there too.
    if let Some(p) = value
        .get("error_file")
        .and_then(|v| v.as_str())
        .filter(|p| !p.is_empty())
    {
        let _ = ERROR_FILE.set(p.into());
    }
    if args.die_with_parent {
        die_with_parent()?;
    }
    let spec: Spec = serde_json::from_value(value).context("spec")?;

    spec.validate().map_err(|e| anyhow!("invalid spec: {e}"))?;
    let debug = std::env::var(cmdline::DEBUG_ENV).ok();
    let init = cmdline::compose(&spec.kernel_args, debug.as_deref())
        .map_err(|e| anyhow!("invalid spec: {e}"))?;
    spec.check_files().map_err(anyhow::Error::msg)?;
    check::HostFacts::probe()
        .check()
        .map_err(anyhow::Error::msg)?;
    // The spec file lives in the VM's run directory.
    let run_dir = args.spec.parent().context("spec file has no directory")?;
    jail::enter(&jail::plan(&spec, run_dir)).map_err(anyhow::Error::msg)?;

    let (host_end, vm_end) = UnixStream::pair().context("agent socketpair")?;
    let vm = vm::build(&spec, &init, vm_end.as_raw_fd()).context("building the VM")?;
    let listener = bridge::listen(&spec.agent_socket)
        .with_context(|| format!("agent socket {:?}", spec.agent_socket))?;
    bridge::spawn(listener, host_end).context("agent bridge thread")?;
    log::info!("entering the VM (kernel init={init})");
    // Returns only on a failure before the guest runs (vm_end lives until then).
    let never = vm.enter().context("starting the VM")?;
    match never {}
}

/// SIGKILL when the parent (strictly: the parent thread) exits.
fn die_with_parent() -> anyhow::Result<()> {
    // SAFETY: plain syscalls without pointers.
    let parent = unsafe { libc::getppid() };
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        bail!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        );
    }
    if unsafe { libc::getppid() } != parent {
        bail!("the parent exited before PR_SET_PDEATHSIG was set");
    }
    Ok(())
}
