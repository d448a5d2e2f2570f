package process

import (
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	seccompbpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The spec's linux.seccomp, compiled in the agent (so a bad profile fails
// the start before anything is forked) into a classic BPF program that the
// setup stage installs with seccomp(2) right before execve. There is no cgo
// and so no libseccomp: the syscall tables and action values come from
// github.com/elastic/go-seccomp-bpf (its x32 table corrected, see
// seccomp_tables.go), and the program is emitted here with
// golang.org/x/net/bpf. The library's own Policy assembler is not used: it
// cannot express several architectures in one filter, a bad-architecture
// action or SCMP_CMP_MASKED_EQ, and after a failed argument condition it
// compares the next syscall number against the argument it loaded (it loads
// the number only once). Everything of an OCI profile is expressible this
// way, so no rule is dropped for its arguments.
//
// The rules, and where they differ from runc with libseccomp:
//   - Actions: SCMP_ACT_KILL and SCMP_ACT_KILL_THREAD kill the thread,
//     SCMP_ACT_KILL_PROCESS the process; SCMP_ACT_TRAP sends SIGSYS;
//     SCMP_ACT_ERRNO fails the call with errnoRet (EPERM when unset),
//     SCMP_ACT_TRACE is SECCOMP_RET_TRACE with errnoRet (EPERM when unset) as
//     its data, as runc does: without a tracer the kernel fails the call with
//     ENOSYS; SCMP_ACT_LOG logs and allows; SCMP_ACT_ALLOW allows.
//     SCMP_ACT_NOTIFY and listenerPath (user notification) are rejected.
//     defaultErrnoRet applies to an ERRNO or TRACE default action.
//   - Architectures: the native one always (runc's libseccomp adds it too);
//     of the others only those this machine can run: on amd64 SCMP_ARCH_X86
//     (i386) and SCMP_ARCH_X32, on arm64 SCMP_ARCH_ARM; the rest are ignored.
//     A call from an architecture (or, on amd64, an ABI: x32) that is not in
//     the filter kills the process. libseccomp's default for that is to kill
//     the thread; the process is the cleaner thing to kill. On amd64 the
//     number -1, which a tracer sets to skip a call, is taken as an x86_64
//     call, not an x32 one (as libseccomp does): it gets the default action.
//   - Syscall names unknown for an architecture are skipped for it, as runc
//     does for names libseccomp does not know.
//   - On i386 a rule for a socket or IPC call (socket, accept, send, shmget,
//     semop, ...) also applies to socketcall(2) or ipc(2) with that call's
//     number as first argument, its own conditions on the first argument
//     dropped, as libseccomp does: denying socket(2) is not bypassed through
//     socketcall(2).
//   - Rules are matched in the profile's order, the first match deciding.
//     libseccomp orders rules for one call that overlap with different
//     actions its own way (an unconditional rule overrides conditional
//     ones, whatever the order); the default profiles have no such rules.
//     Rules whose action is the default action are dropped (libseccomp
//     refuses them, and runc skips them), so they cannot shadow later ones.
//   - Argument conditions of a rule must all hold (AND), except when an
//     argument index appears twice: then each condition is a rule of its own
//     (OR), which is what runc does. Arguments are compared as 64-bit values;
//     on the 32-bit ABIs (i386, x32, arm) as 32-bit ones, like libseccomp.
//     SCMP_CMP_MASKED_EQ is (arg & value) == valueTwo.
//   - Flags: SECCOMP_FILTER_FLAG_LOG and _SPEC_ALLOW go to seccomp(2).
//     _TSYNC is ignored (as runc does): the filter is installed on the thread
//     that calls execve, the only one the program keeps.
//     _WAIT_KILLABLE_RECV only concerns user notification, which is not
//     supported; it is ignored.

// seccompFilter is a compiled profile: what the setup stage passes to
// seccomp(SECCOMP_SET_MODE_FILTER, Flags, prog).
type seccompFilter struct {
	Flags   uint32            `json:"flags,omitempty"`
	Program []unix.SockFilter `json:"program"`
}

// Offsets in struct seccomp_data.
const (
	offNR   = 0
	offArch = 4
	offArgs = 16
)

// bpfMaxInsns is the kernel's limit on a filter's length (BPF_MAXINSNS).
const bpfMaxInsns = 4096

// badArchAction is the action for calls of an ABI the filter does not cover.
const badArchAction = uint32(seccompbpf.ActionKillProcess)

// abi is one calling convention the filter covers.
type abi struct {
	specArch specs.Arch
	info     *arch.Info
	// names is the ABI's syscall table (see seccomp_tables.go).
	names syscallTable
	// x32Bit says how the syscall number's X32 bit selects this ABI among
	// those sharing its audit arch: 0 does not look, +1 requires it, -1
	// requires it clear.
	x32Bit int
	// wide ABIs have 64-bit arguments; the others' are compared in 32 bits.
	wide bool
	// multiplexed are the calls the ABI also has behind a multiplexer.
	multiplexed map[string]multiplexedCall
}

const x32SyscallBit = 0x40000000

// skippedSyscall is the number -1, which a tracer sets to skip a call.
const skippedSyscall = 0xffffffff

// abisFor lists the ABIs a GOARCH can run, the native one first.
func abisFor(goarch string) ([]abi, error) {
	var abis []abi
	switch goarch {
	case "amd64":
		abis = []abi{
			{specArch: specs.ArchX86_64, info: arch.X86_64, x32Bit: -1, wide: true},
			{specArch: specs.ArchX32, info: arch.X32, x32Bit: +1},
			{specArch: specs.ArchX86, info: arch.I386, multiplexed: i386Multiplexed},
		}
	case "arm64":
		abis = []abi{
			{specArch: specs.ArchAARCH64, info: arch.AARCH64, wide: true},
			{specArch: specs.ArchARM, info: arch.ARM},
		}
	default:
		return nil, fmt.Errorf("seccomp is not supported on %s", goarch)
	}
	tables, err := syscallTables()
	if err != nil {
		return nil, err
	}
	for i := range abis {
		abis[i].names = tables[abis[i].info.Name]
	}
	return abis, nil
}

// compileSeccomp compiles the profile for this machine; nil installs
// nothing.
func compileSeccomp(s *specs.LinuxSeccomp) (*seccompFilter, error) {
	return compileSeccompFor(s, runtime.GOARCH)
}

func compileSeccompFor(s *specs.LinuxSeccomp, goarch string) (*seccompFilter, error) {
	if s == nil {
		return nil, nil
	}
	insns, flags, err := seccompProgram(s, goarch)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: assemble: %w", err)
	}
	f := &seccompFilter{Flags: flags, Program: make([]unix.SockFilter, len(raw))}
	for i, r := range raw {
		f.Program[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return f, nil
}

// seccompProgram builds the filter's instructions and seccomp(2) flags.
func seccompProgram(s *specs.LinuxSeccomp, goarch string) ([]bpf.Instruction, uint32, error) {
	if s.ListenerPath != "" {
		return nil, 0, fmt.Errorf("listenerPath %q: seccomp user notification is not supported", s.ListenerPath)
	}
	flags, err := seccompFlags(s.Flags)
	if err != nil {
		return nil, 0, err
	}
	def, err := seccompAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, 0, fmt.Errorf("defaultAction: %w", err)
	}
	rules, err := seccompRules(s.Syscalls, def)
	if err != nil {
		return nil, 0, err
	}
	abis, err := abisFor(goarch)
	if err != nil {
		return nil, 0, err
	}
	wanted := map[specs.Arch]bool{abis[0].specArch: true}
	for _, a := range s.Architectures {
		wanted[a] = true
	}
	var prog []bpf.Instruction
	for _, a := range abis {
		if wanted[a.specArch] {
			prog = append(prog, abiSection(a, rules, def)...)
		}
	}
	prog = append(prog, bpf.RetConstant{Val: badArchAction})
	if len(prog) > bpfMaxInsns {
		return nil, 0, fmt.Errorf("filter has %d instructions, more than the kernel's %d", len(prog), bpfMaxInsns)
	}
	return prog, flags, nil
}

func seccompFlags(names []specs.LinuxSeccompFlag) (uint32, error) {
	var flags uint32
	for _, f := range names {
		switch f {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case "SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagWaitKillableRecv:
			// See above: nothing to do for this filter.
		default:
			return 0, fmt.Errorf("unsupported seccomp flag %q", f)
		}
	}
	return flags, nil
}

// seccompAction maps an OCI action to a SECCOMP_RET_* value.
func seccompAction(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d is out of range", *errnoRet)
		}
		data = uint32(*errnoRet)
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return uint32(seccompbpf.ActionKillThread), nil
	case specs.ActKillProcess:
		return uint32(seccompbpf.ActionKillProcess), nil
	case specs.ActTrap:
		return uint32(seccompbpf.ActionTrap), nil
	case specs.ActErrno:
		return uint32(seccompbpf.ActionErrno) | data, nil
	case specs.ActTrace:
		return uint32(seccompbpf.ActionTrace) | data, nil
	case specs.ActAllow:
		return uint32(seccompbpf.ActionAllow), nil
	case specs.ActLog:
		return uint32(seccompbpf.ActionLog), nil
	case specs.ActNotify:
		return 0, fmt.Errorf("action %s: seccomp user notification is not supported", a)
	}
	return 0, fmt.Errorf("unknown action %q", a)
}

// seccompRule is one OCI rule with its action resolved and its arguments
// split into alternatives: the rule matches a named call when all the
// conditions of any alternative hold (one empty alternative: always).
type seccompRule struct {
	names  []string
	action uint32
	alts   [][]specs.LinuxSeccompArg
}

func seccompRules(calls []specs.LinuxSyscall, def uint32) ([]seccompRule, error) {
	var rules []seccompRule
	for i, c := range calls {
		action, err := seccompAction(c.Action, c.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d] %v: %w", i, c.Names, err)
		}
		if action == def {
			continue
		}
		var count [6]int
		for _, a := range c.Args {
			if a.Index >= 6 {
				return nil, fmt.Errorf("syscalls[%d] %v: argument index %d out of range", i, c.Names, a.Index)
			}
			if !knownOp(a.Op) {
				return nil, fmt.Errorf("syscalls[%d] %v: unknown operator %q", i, c.Names, a.Op)
			}
			count[a.Index]++
		}
		r := seccompRule{names: c.Names, action: action}
		repeated := false
		for _, n := range count {
			repeated = repeated || n > 1
		}
		if repeated {
			for _, a := range c.Args {
				r.alts = append(r.alts, []specs.LinuxSeccompArg{a})
			}
		} else {
			r.alts = [][]specs.LinuxSeccompArg{c.Args}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func knownOp(op specs.LinuxSeccompOperator) bool {
	switch op {
	case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		return true
	}
	return false
}

// abiSection is the part of the filter for one ABI. It is entered with
// anything in A and left, for calls of another ABI, at its end:
//
//	ld [arch]; jeq ARCH, +1, 0; ja end
//	ld [nr]; (X32 bit check; ja end)
//	rules...; ret default
//	end:
func abiSection(a abi, rules []seccompRule, def uint32) []bpf.Instruction {
	var body []bpf.Instruction
	body = append(body, loadNR())
	switch a.x32Bit {
	case -1: // X32 calls go on to the next section, -1 does not
		body = append(body,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: skippedSyscall, SkipTrue: 2},
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipTrue: 0, SkipFalse: 1}, nil)
	case +1:
		body = append(body, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipTrue: 1, SkipFalse: 0}, nil)
	}
	jaAt := len(body) - 1 // the ja's slot (the nil) when there is an X32 check
	body = append(body, abiRules(a, rules)...)
	body = append(body, bpf.RetConstant{Val: def})
	if a.x32Bit != 0 {
		body[jaAt] = bpf.Jump{Skip: uint32(len(body) - jaAt - 1)}
	}
	head := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(a.info.ID), SkipTrue: 1},
		bpf.Jump{Skip: uint32(len(body))},
	}
	return append(head, body...)
}

func loadNR() bpf.Instruction { return bpf.LoadAbsolute{Off: offNR, Size: 4} }

// abiRules emits the rules for one ABI, entered and left (when nothing
// matched) with the syscall number in A. Runs of unconditional rules with
// the same action share one return.
func abiRules(a abi, rules []seccompRule) []bpf.Instruction {
	var out []bpf.Instruction
	var run []uint32 // numbers of the pending unconditional run
	var runAction uint32
	flush := func() {
		for len(run) > 0 {
			n := min(len(run), 255) // jumps reach 255 instructions
			out = append(out, jeqTable(run[:n], runAction)...)
			run = run[n:]
		}
	}
	for _, r := range rules {
		for _, name := range r.names {
			if num, ok := a.names[name]; ok { // else unknown for this ABI
				nr := uint32(num) | uint32(a.info.SeccompMask)
				if len(r.alts) == 1 && len(r.alts[0]) == 0 {
					if len(run) > 0 && runAction != r.action {
						flush()
					}
					runAction = r.action
					run = append(run, nr)
				} else {
					flush()
					for _, alt := range r.alts {
						out = append(out, condBlock(nr, alt, r.action, a.wide)...)
					}
				}
			}
			if m, ok := a.multiplexed[name]; ok {
				flush()
				for _, alt := range multiplexedAlts(r.alts, m.op) {
					out = append(out, condBlock(m.nr, alt, r.action, a.wide)...)
				}
			}
		}
	}
	flush()
	return out
}

// multiplexedAlts are a rule's alternatives for the multiplexer: the
// first argument selects the call, the conditions on it are replaced by
// that (as libseccomp does; the call's own arguments are in memory, out
// of the filter's reach), those on the others are kept.
func multiplexedAlts(alts [][]specs.LinuxSeccompArg, op uint32) [][]specs.LinuxSeccompArg {
	var out [][]specs.LinuxSeccompArg
	for _, alt := range alts {
		m := []specs.LinuxSeccompArg{{Index: 0, Value: uint64(op), Op: specs.OpEqualTo}}
		for _, c := range alt {
			if c.Index != 0 {
				m = append(m, c)
			}
		}
		if !slices.ContainsFunc(out, func(o []specs.LinuxSeccompArg) bool { return slices.Equal(o, m) }) {
			out = append(out, m)
		}
	}
	return out
}

// jeqTable returns action for any of nrs (at most 255 of them):
//
//	jeq nr0, ret, 0; jeq nr1, ret, 0; ...; jeq nrN, 0, +1; ret action
func jeqTable(nrs []uint32, action uint32) []bpf.Instruction {
	out := make([]bpf.Instruction, 0, len(nrs)+1)
	for i, nr := range nrs {
		j := bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(nrs) - 1 - i)}
		if i == len(nrs)-1 {
			j.SkipFalse = 1
		}
		out = append(out, j)
	}
	return append(out, bpf.RetConstant{Val: action})
}

// condBlock returns action for the call nr when all conds hold:
//
//	jeq nr, 0, end; conditions (failing to reload); ret action; reload: ld [nr]; end:
func condBlock(nr uint32, conds []specs.LinuxSeccompArg, action uint32, wide bool) []bpf.Instruction {
	var b condAsm
	b.ins = append(b.ins, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr})
	for _, c := range conds {
		b.cond(c, wide)
	}
	b.ins = append(b.ins, bpf.RetConstant{Val: action})
	reload := len(b.ins)
	b.ins = append(b.ins, loadNR())
	// The number check skips everything, the reload included.
	j := b.ins[0].(bpf.JumpIf)
	j.SkipFalse = uint8(len(b.ins) - 1)
	b.ins[0] = j
	for _, f := range b.fails {
		j := b.ins[f.at].(bpf.JumpIf)
		skip := uint8(reload - f.at - 1)
		if f.onTrue {
			j.SkipTrue = skip
		} else {
			j.SkipFalse = skip
		}
		b.ins[f.at] = j
	}
	return b.ins
}

// condAsm assembles argument conditions; jumps to "fail" are patched once
// the block's reload instruction is placed. A block has at most 6
// conditions of at most 7 instructions, so every jump is short.
type condAsm struct {
	ins   []bpf.Instruction
	fails []failJump
}

type failJump struct {
	at     int
	onTrue bool
}

const fail = -1

func (b *condAsm) ld(off uint32) { b.ins = append(b.ins, bpf.LoadAbsolute{Off: off, Size: 4}) }

func (b *condAsm) and(v uint32) {
	b.ins = append(b.ins, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: v})
}

// jmp adds a conditional jump; jt and jf are skips, or fail.
func (b *condAsm) jmp(cond bpf.JumpTest, v uint32, jt, jf int) {
	j := bpf.JumpIf{Cond: cond, Val: v}
	if jt == fail {
		b.fails = append(b.fails, failJump{len(b.ins), true})
	} else {
		j.SkipTrue = uint8(jt)
	}
	if jf == fail {
		b.fails = append(b.fails, failJump{len(b.ins), false})
	} else {
		j.SkipFalse = uint8(jf)
	}
	b.ins = append(b.ins, j)
}

// cond adds one condition: it falls through when it holds. The argument's
// low word is at offArgs+8*i and its high word 4 further on (little endian:
// amd64 and arm64 are).
func (b *condAsm) cond(c specs.LinuxSeccompArg, wide bool) {
	lo := uint32(offArgs + 8*c.Index)
	hi := lo + 4
	v, vHi := uint32(c.Value), uint32(c.Value>>32)
	if !wide {
		switch c.Op {
		case specs.OpEqualTo:
			b.ld(lo)
			b.jmp(bpf.JumpEqual, v, 0, fail)
		case specs.OpNotEqual:
			b.ld(lo)
			b.jmp(bpf.JumpEqual, v, fail, 0)
		case specs.OpGreaterThan:
			b.ld(lo)
			b.jmp(bpf.JumpGreaterThan, v, 0, fail)
		case specs.OpGreaterEqual:
			b.ld(lo)
			b.jmp(bpf.JumpGreaterOrEqual, v, 0, fail)
		case specs.OpLessThan:
			b.ld(lo)
			b.jmp(bpf.JumpGreaterOrEqual, v, fail, 0)
		case specs.OpLessEqual:
			b.ld(lo)
			b.jmp(bpf.JumpGreaterThan, v, fail, 0)
		case specs.OpMaskedEqual:
			b.ld(lo)
			b.and(v)
			b.jmp(bpf.JumpEqual, uint32(c.ValueTwo), 0, fail)
		}
		return
	}
	switch c.Op {
	case specs.OpEqualTo: // hi == vHi && lo == v
		b.ld(hi)
		b.jmp(bpf.JumpEqual, vHi, 0, fail)
		b.ld(lo)
		b.jmp(bpf.JumpEqual, v, 0, fail)
	case specs.OpNotEqual: // hi != vHi || lo != v
		b.ld(hi)
		b.jmp(bpf.JumpEqual, vHi, 0, 2)
		b.ld(lo)
		b.jmp(bpf.JumpEqual, v, fail, 0)
	case specs.OpGreaterThan, specs.OpGreaterEqual: // hi > vHi || hi == vHi && lo >(=) v
		loTest := bpf.JumpGreaterThan
		if c.Op == specs.OpGreaterEqual {
			loTest = bpf.JumpGreaterOrEqual
		}
		b.ld(hi)
		b.jmp(bpf.JumpGreaterThan, vHi, 3, 0)
		b.jmp(bpf.JumpEqual, vHi, 0, fail)
		b.ld(lo)
		b.jmp(loTest, v, 0, fail)
	case specs.OpLessThan, specs.OpLessEqual: // hi < vHi || hi == vHi && lo <(=) v
		// lo < v is !(lo >= v); lo <= v is !(lo > v).
		loTest := bpf.JumpGreaterOrEqual
		if c.Op == specs.OpLessEqual {
			loTest = bpf.JumpGreaterThan
		}
		b.ld(hi)
		b.jmp(bpf.JumpGreaterOrEqual, vHi, 0, 3)
		b.jmp(bpf.JumpEqual, vHi, 0, fail)
		b.ld(lo)
		b.jmp(loTest, v, fail, 0)
	case specs.OpMaskedEqual: // (arg & Value) == ValueTwo
		d, dHi := uint32(c.ValueTwo), uint32(c.ValueTwo>>32)
		b.ld(hi)
		b.and(vHi)
		b.jmp(bpf.JumpEqual, dHi, 0, fail)
		b.ld(lo)
		b.and(v)
		b.jmp(bpf.JumpEqual, d, 0, fail)
	}
}

// install loads the filter for the calling thread, the one that execs.
// Without no_new_privs this needs CAP_SYS_ADMIN.
func (f *seccompFilter) install() error {
	if len(f.Program) == 0 || len(f.Program) > bpfMaxInsns {
		return fmt.Errorf("install seccomp filter: %d instructions", len(f.Program))
	}
	prog := unix.SockFprog{Len: uint16(len(f.Program)), Filter: &f.Program[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(f.Flags), uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}
