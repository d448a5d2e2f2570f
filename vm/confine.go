package vm

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// How the processes that serve a VM are confined (docs/security.md): a
// hostile guest kernel talks to them, so each runs with as little as it
// needs.
//
//   - QEMU: its own mount, IPC and UTS namespaces, and an empty network
//     namespace when the VM has no NIC; QEMU's seccomp filter (-sandbox,
//     which also sets no_new_privs); after opening its disks, sockets and
//     console it chroots into an empty directory and becomes a uid and gid
//     of the VM's own, with no capabilities (-chroot, -runas).
//   - msb-vmm (krun): PID 1 of its own PID namespace, in the same
//     namespaces as QEMU; it jails itself before libkrun runs (pivot_root
//     into a view of the run directory, disks, share and device nodes, the
//     capabilities of a file server at most, seccomp: jail.rs).
//   - virtiofsd (the Rust one): started by msb-jail as PID 1 of its own
//     PID, mount, network, IPC and UTS namespaces, with a procfs of that PID
//     namespace only; it chroots into the share, keeps only the
//     capabilities a file server needs (not CAP_MKNOD: a guest makes no
//     device nodes on the host) and installs its seccomp filter.

// vmmUIDBase and vmmUIDRange are where a VMM's uid and gid come from: far
// above the host's users and the subordinate id ranges user namespaces
// take by default, one per VM so that VMMs cannot signal or trace each
// other.
const (
	vmmUIDBase  = 0x7f000000
	vmmUIDRange = 1 << 20
)

// vmmUID is the uid (and gid) the VMM of the VM whose run directory is
// dir runs as.
func vmmUID(dir string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(dir)) //nolint:errcheck // a hash never fails
	return vmmUIDBase + h.Sum32()%vmmUIDRange
}

// jailDir is the empty directory QEMU chroots into.
func (f runFiles) jailDir() string { return filepath.Join(f.dir, "jail") }

// makeJailDir makes the empty directory QEMU chroots into.
func makeJailDir(dir string) error {
	if err := os.Mkdir(dir, 0o555); err != nil && !os.IsExist(err) {
		return fmt.Errorf("VMM chroot directory: %w", err)
	}
	return nil
}

// qemuConfinement is QEMU's part of its command line.
func qemuConfinement(files runFiles) []string {
	uid := vmmUID(files.dir)
	return []string{
		// Without elevateprivileges=deny: QEMU installs the filter before
		// it calls setuid for -runas (it then dies of SIGSYS); the filter
		// sets no_new_privs, so nothing it runs could elevate anyway.
		"-sandbox", "on,obsolete=deny,spawn=deny,resourcecontrol=deny",
		"-chroot", files.jailDir(),
		"-runas", fmt.Sprintf("%d:%d", uid, uid),
	}
}

// vmmNamespaces are the namespaces a VMM starts in, with extra: it keeps
// the network namespace it is started in only when the VM has a NIC there.
func vmmNamespaces(spec *Spec, extra uintptr) *syscall.SysProcAttr {
	flags := syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | extra
	if spec.Net == nil {
		flags |= syscall.CLONE_NEWNET
	}
	return &syscall.SysProcAttr{Cloneflags: flags}
}

// virtiofsdCommand runs virtiofsd for sh through msb-jail in namespaces of
// its own.
func virtiofsdCommand(o Options, sh Share, sock string) *exec.Cmd {
	cmd := exec.Command(o.Jail, append([]string{o.Virtiofsd}, virtiofsdArgs(sh, sock)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
		syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS}
	return cmd
}

// virtiofsdMaxFiles bounds the files virtiofsd holds open for the guest:
// 65536, or the hard limit it inherits if that is lower (raising it needs
// CAP_SYS_RESOURCE).
func virtiofsdMaxFiles() uint64 {
	const want = 65536
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max < want {
		return lim.Max
	}
	return want
}

func virtiofsdArgs(sh Share, sock string) []string {
	return []string{
		"--socket-path=" + sock, "--shared-dir=" + sh.Path,
		// msb-jail made the namespaces; virtiofsd chroots into the share.
		"--sandbox=chroot", "--seccomp=kill", "--modcaps=-mknod",
		"--cache=auto", "--log-level=error",
		// Explicit: its default reads /proc/sys, which msb-jail's procfs
		// does not show; and a bound on what a guest can make it hold open.
		"--rlimit-nofile=" + strconv.FormatUint(virtiofsdMaxFiles(), 10),
		// As QEMU 7.2's C virtiofsd did: the guest sees the share as one
		// file system (the shim mirrors read-only binds' submounts).
		"--no-announce-submounts",
	}
}
