package process

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// These tests run the compiled filters in x/net/bpf's VM on hand-made
// struct seccomp_data, for amd64 whatever the host is.

const (
	retKillThread  = unix.SECCOMP_RET_KILL_THREAD
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS
	retAllow       = unix.SECCOMP_RET_ALLOW
	retErrno       = unix.SECCOMP_RET_ERRNO
)

type call struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

// data lays out struct seccomp_data of a little-endian machine for the VM,
// whose 32-bit loads are big endian (packet order) where the kernel's
// seccomp loads are native: each 32-bit word is stored big endian at the
// offset the kernel would find it.
func (c call) data() []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], c.nr)
	binary.BigEndian.PutUint32(b[4:], c.arch)
	for i, a := range c.args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))       // low word first
		binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(a>>32)) // then the high one
	}
	return b
}

func x86(name string, args ...uint64) call  { return mkCall(arch.X86_64, name, args) }
func i386(name string, args ...uint64) call { return mkCall(arch.I386, name, args) }
func x32(name string, args ...uint64) call  { return mkCall(arch.X32, name, args) }

func mkCall(a *arch.Info, name string, args []uint64) call {
	tables, err := syscallTables()
	if err != nil {
		panic(err)
	}
	nr, ok := tables[a.Name][name]
	if !ok {
		panic(name + " unknown for " + a.Name)
	}
	c := call{arch: uint32(a.ID), nr: uint32(nr | a.SeccompMask)}
	copy(c.args[:], args)
	return c
}

type vmFilter struct {
	t  *testing.T
	vm *bpf.VM
	n  int
}

func compileVM(t *testing.T, s *specs.LinuxSeccomp) *vmFilter {
	t.Helper()
	insns, _, err := seccompProgram(s, "amd64")
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("vm: %v", err)
	}
	return &vmFilter{t, vm, len(insns)}
}

func (f *vmFilter) run(c call) uint32 {
	f.t.Helper()
	r, err := f.vm.Run(c.data())
	if err != nil {
		f.t.Fatalf("run %+v: %v", c, err)
	}
	return uint32(r)
}

func (f *vmFilter) expect(c call, want uint32) {
	f.t.Helper()
	if got := f.run(c); got != want {
		f.t.Errorf("call arch %#x nr %#x args %v: %#x, want %#x", c.arch, c.nr, c.args, got, want)
	}
}

func uintp(v uint) *uint { return &v }

func denyHostname() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"sethostname", "setdomainname"}, Action: specs.ActErrno},
	}}
}

func TestSeccompNil(t *testing.T) {
	f, err := compileSeccomp(nil)
	if f != nil || err != nil {
		t.Fatalf("nil profile: %v, %v", f, err)
	}
}

func TestSeccompActions(t *testing.T) {
	for _, tc := range []struct {
		act   specs.LinuxSeccompAction
		errno *uint
		want  uint32
		err   string
	}{
		{specs.ActKill, nil, retKillThread, ""},
		{specs.ActKillThread, nil, retKillThread, ""},
		{specs.ActKillProcess, nil, retKillProcess, ""},
		{specs.ActTrap, nil, unix.SECCOMP_RET_TRAP, ""},
		{specs.ActErrno, nil, retErrno | uint32(unix.EPERM), ""},
		{specs.ActErrno, uintp(uint(unix.ENOSYS)), retErrno | uint32(unix.ENOSYS), ""},
		{specs.ActErrno, uintp(0x10000), 0, "out of range"},
		{specs.ActTrace, nil, unix.SECCOMP_RET_TRACE | uint32(unix.EPERM), ""},
		{specs.ActTrace, uintp(5), unix.SECCOMP_RET_TRACE | 5, ""},
		{specs.ActAllow, nil, retAllow, ""},
		{specs.ActAllow, uintp(5), retAllow, ""}, // errnoRet means nothing there
		{specs.ActLog, nil, unix.SECCOMP_RET_LOG, ""},
		{specs.ActNotify, nil, 0, "not supported"},
		{"SCMP_ACT_BOGUS", nil, 0, "unknown action"},
	} {
		got, err := seccompAction(tc.act, tc.errno)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.act, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s errno %v: %#x, %v; want %#x", tc.act, tc.errno, got, err, tc.want)
		}
	}
}

func TestSeccompDenyHostname(t *testing.T) {
	f := compileVM(t, denyHostname())
	eperm := retErrno | uint32(unix.EPERM)
	f.expect(x86("sethostname"), eperm)
	f.expect(x86("setdomainname"), eperm)
	f.expect(x86("read"), retAllow)
	f.expect(x86("execve"), retAllow)
}

func TestSeccompDefaultErrno(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(unix.ENOSYS)),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write"}, Action: specs.ActAllow},
			{Names: []string{"unshare"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EACCES))},
			{Names: []string{"mount"}, Action: specs.ActKillProcess},
		}}
	f := compileVM(t, s)
	f.expect(x86("read"), retAllow)
	f.expect(x86("write"), retAllow)
	f.expect(x86("unshare"), retErrno|uint32(unix.EACCES))
	f.expect(x86("mount"), retKillProcess)
	f.expect(x86("keyctl"), retErrno|uint32(unix.ENOSYS))
}

func TestSeccompArchitectures(t *testing.T) {
	eperm := retErrno | uint32(unix.EPERM)
	// Only the native ABI: i386 and x32 calls are killed.
	f := compileVM(t, denyHostname())
	f.expect(x86("sethostname"), eperm)
	f.expect(i386("sethostname"), retKillProcess)
	f.expect(i386("read"), retKillProcess)
	f.expect(x32("read"), retKillProcess)
	f.expect(call{arch: uint32(arch.AARCH64.ID), nr: 0}, retKillProcess)

	// Listed ones are filtered with their own numbers; arches this machine
	// cannot run are ignored.
	s := denyHostname()
	s.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchS390X}
	f = compileVM(t, s)
	f.expect(x86("sethostname"), eperm)
	f.expect(i386("sethostname"), eperm)
	f.expect(i386("read"), retAllow)
	f.expect(x32("sethostname"), eperm)
	f.expect(x32("read"), retAllow)
	f.expect(call{arch: uint32(arch.AARCH64.ID), nr: 161}, retKillProcess)
	// i386's sethostname number (74) is fsync on x86_64.
	if arch.X86_64.SyscallNumbers[74] != "fsync" {
		t.Fatalf("x86_64 74 is %s", arch.X86_64.SyscallNumbers[74])
	}
	f.expect(call{arch: uint32(arch.X86_64.ID), nr: 74}, retAllow)

	// Only x32 listed (no i386).
	s.Architectures = []specs.Arch{specs.ArchX32}
	f = compileVM(t, s)
	f.expect(x32("sethostname"), eperm)
	f.expect(x86("sethostname"), eperm)
	f.expect(i386("read"), retKillProcess)

	if _, _, err := seccompProgram(denyHostname(), "riscv64"); err == nil {
		t.Error("riscv64: no error")
	}
}

func TestSeccompUnknownNames(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"no_such_call", "sethostname", "arch_prctl"}, Action: specs.ActErrno},
			{Names: []string{"only_in_the_future"}, Action: specs.ActKill},
		}}
	f := compileVM(t, s)
	f.expect(x86("sethostname"), retErrno|uint32(unix.EPERM))
	f.expect(x86("arch_prctl"), retErrno|uint32(unix.EPERM))
	f.expect(i386("sethostname"), retErrno|uint32(unix.EPERM)) // arch_prctl is x86_64-only
	f.expect(x86("read"), retAllow)
}

// evalOp is the reference: libseccomp's meaning of each operator.
func evalOp(op specs.LinuxSeccompOperator, arg, v, v2 uint64) bool {
	switch op {
	case specs.OpEqualTo:
		return arg == v
	case specs.OpNotEqual:
		return arg != v
	case specs.OpGreaterThan:
		return arg > v
	case specs.OpGreaterEqual:
		return arg >= v
	case specs.OpLessThan:
		return arg < v
	case specs.OpLessEqual:
		return arg <= v
	case specs.OpMaskedEqual:
		return arg&v == v2
	}
	panic(op)
}

var allOps = []specs.LinuxSeccompOperator{specs.OpEqualTo, specs.OpNotEqual, specs.OpGreaterThan,
	specs.OpGreaterEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpMaskedEqual}

func interesting(v uint64) []uint64 {
	out := []uint64{0, 1, 0xffffffff, 1 << 32, 0xffffffffffffffff, v, v + 1, v - 1,
		v + 1<<32, v - 1<<32, v ^ 0xff, v &^ 0xf0}
	return out
}

func TestSeccompArgOps(t *testing.T) {
	values := []struct{ v, v2 uint64 }{
		{0, 0}, {8, 8}, {0x20000, 0x20000}, {0x7E020000, 0}, {0x1_0000_0005, 0x1_0000_0004},
		{0xffffffff, 0xff}, {0xffffffff00000000, 0x100000000}, {5, 1},
	}
	for _, op := range allOps {
		for _, val := range values {
			s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86},
				Syscalls: []specs.LinuxSyscall{{Names: []string{"personality"}, Action: specs.ActErrno,
					Args: []specs.LinuxSeccompArg{{Index: 0, Value: val.v, ValueTwo: val.v2, Op: op}}}}}
			f := compileVM(t, s)
			for _, a := range interesting(val.v) {
				want := uint32(retAllow)
				if evalOp(op, a, val.v, val.v2) {
					want = retErrno | uint32(unix.EPERM)
				}
				if got := f.run(x86("personality", a)); got != want {
					t.Errorf("x86_64 %s %#x/%#x on %#x: %#x, want %#x", op, val.v, val.v2, a, got, want)
				}
				// 32-bit ABIs compare 32-bit values: the register's.
				a32 := a & 0xffffffff
				want = retAllow
				if evalOp(op, a32, val.v&0xffffffff, val.v2&0xffffffff) {
					want = retErrno | uint32(unix.EPERM)
				}
				if got := f.run(i386("personality", a32)); got != want {
					t.Errorf("i386 %s %#x/%#x on %#x: %#x, want %#x", op, val.v, val.v2, a32, got, want)
				}
			}
		}
	}
}

// Docker's and containerd's default profiles allow with a default of
// ERRNO: conditional rules must not disturb the rules after them.
func TestSeccompArgRulesLikeDefaultProfile(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOSYS))},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpNotEqual}}},
			// Two conditions on different arguments: both must hold.
			{Names: []string{"kill"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1, Op: specs.OpGreaterThan}, {Index: 1, Value: 9, Op: specs.OpNotEqual}}},
			// Two on the same argument: either may hold (runc's reading).
			{Names: []string{"prctl"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 0, Value: 2, Op: specs.OpEqualTo}}},
			{Names: []string{"read", "write", "sethostname"}, Action: specs.ActAllow},
		}}
	f := compileVM(t, s)
	eperm := retErrno | uint32(unix.EPERM)
	for _, c := range []struct {
		c    call
		want uint32
	}{
		{x86("personality", 0), retAllow},
		{x86("personality", 8), retAllow},
		{x86("personality", 0xffffffff), retAllow},
		{x86("personality", 4), eperm},
		{x86("clone", uint64(unix.SIGCHLD)), retAllow},
		{x86("clone", unix.CLONE_NEWNS|uint64(unix.SIGCHLD)), eperm},
		{x86("clone", unix.CLONE_NEWUSER), eperm},
		{x86("clone3"), retErrno | uint32(unix.ENOSYS)},
		{x86("socket", unix.AF_INET), retAllow},
		{x86("socket", unix.AF_VSOCK), eperm},
		{x86("kill", 5, 15), retAllow},
		{x86("kill", 5, 9), eperm},
		{x86("kill", 1, 15), eperm},
		{x86("prctl", 1), retAllow},
		{x86("prctl", 2), retAllow},
		{x86("prctl", 3), eperm},
		// After every failed condition, the number is checked again.
		{x86("read", 4), retAllow},
		{x86("write"), retAllow},
		{x86("sethostname"), retAllow},
		{x86("unshare"), eperm},
		{i386("personality", 8), retAllow},
		{i386("personality", 4), eperm},
		{i386("read"), retAllow},
		{i386("clone", unix.CLONE_NEWNS), eperm},
		{x32("personality", 0), retAllow},
		{x32("read"), retAllow},
		{x32("unshare"), eperm},
	} {
		f.expect(c.c, c.want)
	}
}

// A rule with the default action is dropped (libseccomp refuses it) and so
// does not shadow a later rule for the same call.
func TestSeccompRuleWithDefaultActionDropped(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"sethostname"}, Action: specs.ActAllow},
		{Names: []string{"sethostname"}, Action: specs.ActErrno},
	}}
	compileVM(t, s).expect(x86("sethostname"), retErrno|uint32(unix.EPERM))
}

func TestSeccompErrors(t *testing.T) {
	for _, tc := range []struct {
		s   specs.LinuxSeccomp
		err string
	}{
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/l.sock"}, "listenerPath"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, "not supported"},
		{specs.LinuxSeccomp{DefaultAction: ""}, "defaultAction"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}}, "unsupported seccomp flag"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActNotify}}}, "not supported"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "index 6"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_XX"}}}}}, "unknown operator"},
	} {
		_, err := compileSeccompFor(&tc.s, "amd64")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want %q", tc.s, err, tc.err)
		}
	}
}

func TestSeccompFlags(t *testing.T) {
	s := denyHostname()
	s.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, "SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagWaitKillableRecv}
	f, err := compileSeccompFor(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW); f.Flags != want {
		t.Fatalf("flags %#x, want %#x", f.Flags, want)
	}
}

// A profile the size of the default ones (every x86_64 call, some with
// arguments, for three ABIs) fits the kernel's limit and matches past the
// 255-instruction reach of a conditional jump.
func TestSeccompLargeProfile(t *testing.T) {
	var names []string
	for _, n := range arch.X86_64.SyscallNumbers {
		if n != "sethostname" && n != "personality" {
			names = append(names, n)
		}
	}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: names, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
		}}
	f := compileVM(t, s)
	if f.n > bpfMaxInsns {
		t.Fatalf("%d instructions", f.n)
	}
	t.Logf("%d names, %d instructions", len(names), f.n)
	eperm := retErrno | uint32(unix.EPERM)
	for nr, name := range arch.X86_64.SyscallNumbers {
		want := uint32(retAllow)
		if name == "sethostname" || name == "personality" {
			want = eperm
		}
		f.expect(call{arch: uint32(arch.X86_64.ID), nr: uint32(nr)}, want)
	}
	f.expect(x86("personality", 8), retAllow)
	f.expect(i386("personality", 8), retAllow)
	f.expect(x32("personality", 8), retAllow)
	f.expect(i386("sethostname"), eperm)
	f.expect(call{arch: uint32(arch.X86_64.ID), nr: 5000}, eperm) // unknown number: the default
}

func TestSeccompConfigRoundTrip(t *testing.T) {
	filter, err := compileSeccompFor(denyHostname(), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	in := &childConfig{Root: "/r", Process: &specs.Process{Args: []string{"true"}}, Seccomp: filter}
	var b strings.Builder
	if err := in.encode(&b); err != nil {
		t.Fatal(err)
	}
	out, err := decodeConfig(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(in.Seccomp)
	c, _ := json.Marshal(out.Seccomp)
	if string(a) != string(c) || len(out.Seccomp.Program) == 0 {
		t.Fatalf("seccomp filter changed: %s vs %s", a, c)
	}
}

// A tracer skips a call by setting its number to -1, and the kernel runs
// the filter again on that: it is not an x32 call, whatever the filter
// covers (libseccomp's filters do the same).
func TestSeccompSkippedSyscall(t *testing.T) {
	skipped := call{arch: uint32(arch.X86_64.ID), nr: skippedSyscall}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read"}, Action: specs.ActAllow}}}
	f := compileVM(t, s)
	f.expect(skipped, retErrno|uint32(unix.EPERM))
	f.expect(x32("read"), retKillProcess) // x32 is not covered
	s.Architectures = []specs.Arch{specs.ArchX32}
	compileVM(t, s).expect(skipped, retErrno|uint32(unix.EPERM))
	compileVM(t, denyHostname()).expect(skipped, retAllow)
}

// On i386, socket and IPC calls are also made through socketcall(2) and
// ipc(2), the call's number in the first argument: a rule for the call
// applies there too, its conditions on the first argument replaced.
func TestSeccompI386Multiplexers(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"socket"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpEqualTo}}},
			{Names: []string{"accept", "send", "shmget"}, Action: specs.ActKillProcess},
			{Names: []string{"connect"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 16, Op: specs.OpEqualTo}}},
		}}
	f := compileVM(t, s)
	socketcall := func(args ...uint64) call { return i386("socketcall", args...) }
	eperm := retErrno | uint32(unix.EPERM)
	for _, c := range []struct {
		c    call
		want uint32
	}{
		{i386("socket", unix.AF_VSOCK), eperm},
		{i386("socket", unix.AF_INET), retAllow},
		{socketcall(1), eperm}, // SYS_SOCKET: the domain is in memory
		{socketcall(2), retAllow},
		{socketcall(5), retKillProcess}, // SYS_ACCEPT: i386 has no accept(2)
		{socketcall(9), retKillProcess}, // SYS_SEND
		{socketcall(3, 0, 16), unix.SECCOMP_RET_TRAP},
		{socketcall(3, 0, 15), retAllow},
		{i386("connect", 0, 0, 16), unix.SECCOMP_RET_TRAP},
		{i386("ipc", 23), retKillProcess}, // SHMGET
		{i386("shmget"), retKillProcess},
		{i386("ipc", 22), retAllow},
		// Not on the other ABIs.
		{x86("socket", unix.AF_VSOCK), eperm},
		{x86("accept"), retKillProcess},
		{call{arch: uint32(arch.X86_64.ID), nr: 102, args: [6]uint64{1}}, retAllow},
	} {
		f.expect(c.c, c.want)
	}
}
