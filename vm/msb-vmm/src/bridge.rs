//! The agent socket: a unix listener at `spec.agent_socket` whose connections,
//! one at a time, are spliced to our end of the socketpair behind the guest's
//! `msb.agent` console port. A restarted host process reconnects by path.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::Duration;

/// Binds `path`, replacing a stale socket left by an earlier run.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// Serves `listener` on a thread for as long as the VM end stays open.
pub fn spawn(listener: UnixListener, vm: UnixStream) -> io::Result<()> {
    thread::Builder::new()
        .name("agent-bridge".into())
        .spawn(move || serve(listener, vm))?;
    Ok(())
}

/// Which side ended a connection.
#[derive(Debug)]
enum End {
    Client(io::Result<()>),
    Vm(io::Result<()>),
}

fn serve(listener: UnixListener, mut vm: UnixStream) {
    for conn in listener.incoming() {
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                log::warn!("agent socket: accept: {e}");
                thread::sleep(Duration::from_millis(100)); // e.g. EMFILE: do not spin
                continue;
            }
        };
        log::info!("agent socket: client connected");
        match splice(&mut conn, &mut vm) {
            End::Client(Ok(())) => log::info!("agent socket: client disconnected"),
            End::Client(Err(e)) => log::warn!("agent socket: client dropped: {e}"),
            End::Vm(r) => {
                // The VMM closes the port only as it ends.
                log::info!("agent port closed ({r:?}); bridge stops");
                return;
            }
        }
    }
}

/// Copies both ways until one side closes. Single-threaded on purpose: nothing
/// is left blocked on the VM end when a client goes away, and bytes the guest
/// writes while no client is connected wait in the socketpair for the next one.
fn splice(conn: &mut UnixStream, vm: &mut UnixStream) -> End {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let ready = match poll_in([conn.as_raw_fd(), vm.as_raw_fd()]) {
            Ok(r) => r,
            Err(e) => return End::Vm(Err(e)),
        };
        if ready[0] {
            match conn.read(&mut buf) {
                Ok(0) => return End::Client(Ok(())),
                Ok(n) => {
                    if let Err(e) = vm.write_all(&buf[..n]) {
                        return End::Vm(Err(e));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return End::Client(Err(e)),
            }
        }
        if ready[1] {
            match vm.read(&mut buf) {
                Ok(0) => return End::Vm(Ok(())),
                Ok(n) => {
                    if let Err(e) = conn.write_all(&buf[..n]) {
                        return End::Client(Err(e)); // what was read is lost with this client
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return End::Vm(Err(e)),
            }
        }
    }
}

/// Waits until either fd is readable (or hung up).
fn poll_in(fds: [RawFd; 2]) -> io::Result<[bool; 2]> {
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: p is a valid array of two pollfd.
        if unsafe { libc::poll(p.as_mut_ptr(), 2, -1) } >= 0 {
            return Ok(p.map(|x| x.revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(path: &Path, guest: &mut UnixStream, tag: &str) -> UnixStream {
        let mut c = UnixStream::connect(path).unwrap();
        c.write_all(format!("ping {tag}").as_bytes()).unwrap();
        let mut b = vec![0u8; 5 + tag.len()];
        guest.read_exact(&mut b).unwrap();
        assert_eq!(b, format!("ping {tag}").as_bytes());
        guest.write_all(format!("pong {tag}").as_bytes()).unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(b, format!("pong {tag}").as_bytes());
        c
    }

    #[test]
    fn bridges_and_accepts_the_next_client() {
        let dir = std::env::temp_dir().join(format!("msb-vmm-bridge-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        drop(UnixListener::bind(&path).unwrap()); // a stale socket from an earlier run
        let (host, mut guest) = UnixStream::pair().unwrap();
        spawn(listen(&path).unwrap(), host).unwrap();

        let c1 = exchange(&path, &mut guest, "one");
        drop(c1);
        // Bytes the guest sends while nobody is connected go to the next client.
        guest.write_all(b"early").unwrap();
        let mut c2 = UnixStream::connect(&path).unwrap();
        let mut b = [0u8; 5];
        c2.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"early");
        drop(c2);
        drop(exchange(&path, &mut guest, "three"));

        fs::write(dir.join("plain"), "x").unwrap();
        assert!(listen(&dir.join("plain")).is_err()); // never removes a non-socket
        fs::remove_dir_all(&dir).unwrap();
    }
}
