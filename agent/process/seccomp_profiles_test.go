package process

import (
	_ "embed"
	"slices"
	"testing"

	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Real-world and hand-made profiles, for the tests here and the
// comparison with libseccomp (seccomp_libseccomp_test.go).

// Docker's default profile, as dockerd reads a profile file (see
// testdata/seccomp/README.md).
//
//go:embed testdata/seccomp/docker-default.json
var dockerDefaultJSON string

// defaultCaps is Docker's and containerd's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps adds those the default profiles grant more calls for.
var allCaps = append(slices.Clone(defaultCaps),
	"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
	"CAP_SYS_PACCT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG",
	"CAP_SYSLOG", "CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH", "CAP_LEASE", "CAP_NET_ADMIN")

func capsSpec(caps []string) *specs.Spec {
	return &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps}}}
}

type namedProfile struct {
	name    string
	profile *specs.LinuxSeccomp
}

func defaultProfiles(t *testing.T) []namedProfile {
	t.Helper()
	var out []namedProfile
	for _, c := range []struct {
		name string
		caps []string
	}{{"default caps", defaultCaps}, {"all caps", allCaps}} {
		docker, err := mobyseccomp.LoadProfile(dockerDefaultJSON, capsSpec(c.caps))
		if err != nil {
			t.Fatalf("docker profile: %v", err)
		}
		out = append(out,
			namedProfile{"docker, " + c.name, docker},
			namedProfile{"containerd, " + c.name, ctrdseccomp.DefaultProfile(capsSpec(c.caps))})
	}
	return out
}

func arg(i uint, op specs.LinuxSeccompOperator, v uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: i, Value: v, Op: op}
}

func masked(i uint, mask, v uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: i, Value: mask, ValueTwo: v, Op: specs.OpMaskedEqual}
}

// blocklistProfiles allow by default and deny some calls, with every
// operator, 64-bit values, repeated argument indices and errno values.
func blocklistProfiles() []namedProfile {
	x86s := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	deny := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: x86s,
		Syscalls: []specs.LinuxSyscall{
			// x32 has these at its own numbers (512..547).
			{Names: []string{"ptrace", "process_vm_readv", "process_vm_writev", "kexec_load"}, Action: specs.ActKill},
			{Names: []string{"execveat"}, Action: specs.ActTrap},
			{Names: []string{"ioctl"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg(1, specs.OpEqualTo, unix.TIOCSTI)}},
			// Two rules for one call, different actions, disjoint conditions.
			{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EINVAL)),
				Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, 0xffffffff)}},
			{Names: []string{"personality"}, Action: specs.ActKillProcess,
				Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, 8)}},
			{Names: []string{"clone", "unshare"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{masked(0, unix.CLONE_NEWUSER, unix.CLONE_NEWUSER)}},
			// Two conditions on one argument: either (runc's reading).
			{Names: []string{"prctl"}, Action: specs.ActKillProcess,
				Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, unix.PR_SET_MM), arg(0, specs.OpEqualTo, unix.PR_SET_SECCOMP)}},
			// Conditions on two arguments: both.
			{Names: []string{"kill", "tkill"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EACCES)),
				Args: []specs.LinuxSeccompArg{arg(0, specs.OpGreaterThan, 1), arg(1, specs.OpEqualTo, uint64(unix.SIGKILL))}},
			{Names: []string{"mmap", "mprotect"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EACCES)),
				Args: []specs.LinuxSeccompArg{masked(2, unix.PROT_EXEC|unix.PROT_WRITE, unix.PROT_EXEC|unix.PROT_WRITE)}},
			// 64-bit values, each operator.
			{Names: []string{"lseek"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg(1, specs.OpGreaterThan, 0x1_0000_0005)}},
			{Names: []string{"fadvise64"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg(1, specs.OpGreaterEqual, 0x2_0000_0000)}},
			{Names: []string{"ftruncate"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg(1, specs.OpLessThan, 0x1_0000_0000)}},
			{Names: []string{"truncate"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg(1, specs.OpLessEqual, 0xffff_ffff_0000_0000)}},
			{Names: []string{"fallocate"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg(3, specs.OpNotEqual, 0x7fff_ffff_ffff_ffff)}},
			{Names: []string{"pread64"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{masked(3, 0xffff_0000_ffff_0000, 0x1234_0000_5678_0000)}},
			{Names: []string{"mount", "umount2", "pivot_root"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EPERM))},
			{Names: []string{"keyctl", "add_key", "request_key"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOSYS))},
			// i386 has these as socketcall(2) and ipc(2) calls too.
			{Names: []string{"socket"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, unix.AF_VSOCK)}},
			{Names: []string{"bind"}, Action: specs.ActErrno},
			{Names: []string{"shmget", "msgsnd"}, Action: specs.ActErrno},
			// A rule with the default action, an i386-only call, an
			// unknown name.
			{Names: []string{"getpid"}, Action: specs.ActAllow},
			{Names: []string{"waitpid", "no_such_syscall"}, Action: specs.ActKillThread},
		}}
	// Deny by default with an errno of its own, native ABI only.
	allow := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(unix.ENOSYS)),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "exit", "exit_group", "rt_sigreturn", "brk", "close"}, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{arg(0, specs.OpLessThan, unix.AF_INET6+1)}},
			{Names: []string{"mmap"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{masked(2, unix.PROT_EXEC, 0)}},
			{Names: []string{"unshare", "setns"}, Action: specs.ActErrno},
			{Names: []string{"ptrace"}, Action: specs.ActKillProcess, Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, unix.PTRACE_ATTACH)}},
			{Names: []string{"ptrace"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, unix.PTRACE_TRACEME)}},
		}}
	// The remaining actions, x86_64 and x32 only.
	actions := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActTrace, ErrnoRet: uintp(uint(unix.EIO))},
			{Names: []string{"uname"}, Action: specs.ActTrace},
			{Names: []string{"sync", "syncfs"}, Action: specs.ActLog},
			{Names: []string{"readv", "writev"}, Action: specs.ActKillThread, Args: []specs.LinuxSeccompArg{arg(2, specs.OpGreaterEqual, 1024)}},
		}}
	return []namedProfile{{"blocklist", deny}, {"allowlist, native only", allow}, {"actions, x32", actions}}
}

// The default profiles fit in one filter for each machine.
func TestSeccompDefaultProfilesCompile(t *testing.T) {
	for _, p := range append(defaultProfiles(t), blocklistProfiles()...) {
		for _, goarch := range []string{"amd64", "arm64"} {
			f, err := compileSeccompFor(p.profile, goarch)
			if err != nil {
				t.Errorf("%s on %s: %v", p.name, goarch, err)
				continue
			}
			t.Logf("%s on %s: %d rules, %d instructions", p.name, goarch, len(p.profile.Syscalls), len(f.Program))
		}
	}
}
