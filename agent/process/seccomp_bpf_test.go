package process

import (
	"encoding/binary"
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A classic BPF interpreter with the kernel's seccomp semantics, to run
// any compiler's filter (ours, libseccomp's) on the same input:
// x/net/bpf's VM loads words big endian (packet order), where seccomp
// loads struct seccomp_data in the machine's order.

// seccompData is struct seccomp_data.
type seccompData struct {
	nr   uint32 // int nr
	arch uint32
	ip   uint64
	args [6]uint64
}

const seccompDataSize = 64

// bytes lays d out as a little-endian machine (amd64, arm64) does.
func (d *seccompData) bytes() [seccompDataSize]byte {
	var b [seccompDataSize]byte
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// runSeccompBPF returns what prog returns for d. It refuses what the
// kernel's seccomp_check_filter refuses on the way (loads other than
// aligned words of seccomp_data, jumps out of the program, falling off
// its end).
func runSeccompBPF(prog []unix.SockFilter, d *seccompData) (uint32, error) {
	data := d.bytes()
	var a, x uint32
	var mem [16]uint32
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		k := ins.K
		switch ins.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if k%4 != 0 || k >= seccompDataSize {
				return 0, fmt.Errorf("pc %d: load at %d", pc, k)
			}
			a = binary.LittleEndian.Uint32(data[k:])
		case unix.BPF_LD | unix.BPF_W | unix.BPF_LEN:
			a = seccompDataSize
		case unix.BPF_LDX | unix.BPF_W | unix.BPF_LEN:
			x = seccompDataSize
		case unix.BPF_LD | unix.BPF_IMM:
			a = k
		case unix.BPF_LDX | unix.BPF_IMM:
			x = k
		case unix.BPF_LD | unix.BPF_MEM, unix.BPF_LDX | unix.BPF_MEM,
			unix.BPF_ST, unix.BPF_STX:
			if k >= uint32(len(mem)) {
				return 0, fmt.Errorf("pc %d: scratch slot %d", pc, k)
			}
			switch ins.Code {
			case unix.BPF_LD | unix.BPF_MEM:
				a = mem[k]
			case unix.BPF_LDX | unix.BPF_MEM:
				x = mem[k]
			case unix.BPF_ST:
				mem[k] = a
			default:
				mem[k] = x
			}
		case unix.BPF_MISC | unix.BPF_TAX:
			x = a
		case unix.BPF_MISC | unix.BPF_TXA:
			a = x
		case unix.BPF_RET | unix.BPF_K:
			return k, nil
		case unix.BPF_RET | unix.BPF_A:
			return a, nil
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(k)
		default:
			operand := k
			if ins.Code&unix.BPF_X != 0 {
				operand = x
			}
			var err error
			switch ins.Code & 0x07 {
			case unix.BPF_ALU:
				a, err = bpfALU(ins.Code, a, operand)
			case unix.BPF_JMP:
				var taken bool
				taken, err = bpfJump(ins.Code, a, operand)
				if taken {
					pc += int(ins.Jt)
				} else {
					pc += int(ins.Jf)
				}
			default:
				err = fmt.Errorf("opcode %#x", ins.Code)
			}
			if err != nil {
				return 0, fmt.Errorf("pc %d: %w", pc, err)
			}
		}
		if pc+1 >= len(prog) {
			return 0, fmt.Errorf("pc %d: runs past the end (%d instructions)", pc, len(prog))
		}
	}
	return 0, fmt.Errorf("empty program")
}

func bpfALU(code uint16, a, v uint32) (uint32, error) {
	switch code &^ (0x07 | unix.BPF_X) {
	case unix.BPF_ADD:
		return a + v, nil
	case unix.BPF_SUB:
		return a - v, nil
	case unix.BPF_MUL:
		return a * v, nil
	case unix.BPF_DIV, unix.BPF_MOD:
		if v == 0 { // classic BPF: the program returns 0; no compiler here divides
			return 0, fmt.Errorf("division by zero")
		}
		if code&0xf0 == unix.BPF_DIV {
			return a / v, nil
		}
		return a % v, nil
	case unix.BPF_OR:
		return a | v, nil
	case unix.BPF_AND:
		return a & v, nil
	case unix.BPF_XOR:
		return a ^ v, nil
	case unix.BPF_LSH:
		return a << (v & 31), nil
	case unix.BPF_RSH:
		return a >> (v & 31), nil
	case unix.BPF_NEG:
		return -a, nil
	}
	return 0, fmt.Errorf("ALU opcode %#x", code)
}

func bpfJump(code uint16, a, v uint32) (bool, error) {
	switch code &^ (0x07 | unix.BPF_X) {
	case unix.BPF_JEQ:
		return a == v, nil
	case unix.BPF_JGT:
		return a > v, nil
	case unix.BPF_JGE:
		return a >= v, nil
	case unix.BPF_JSET:
		return a&v != 0, nil
	}
	return false, fmt.Errorf("jump opcode %#x", code)
}

func TestSeccompBPFInterpreter(t *testing.T) {
	ins := func(code uint16, jt, jf uint8, k uint32) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	ld := func(off uint32) unix.SockFilter { return ins(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, off) }
	ret := func(v uint32) unix.SockFilter { return ins(unix.BPF_RET|unix.BPF_K, 0, 0, v) }
	d := &seccompData{nr: 0x40000200, arch: 0xc000003e, ip: 0x1122334455667788,
		args: [6]uint64{0xaaaabbbbccccdddd, 5}}
	for _, tc := range []struct {
		name string
		prog []unix.SockFilter
		want uint32
		err  bool
	}{
		{"nr", []unix.SockFilter{ld(0), ins(unix.BPF_RET|unix.BPF_A, 0, 0, 0)}, 0x40000200, false},
		{"arch", []unix.SockFilter{ld(4), ins(unix.BPF_RET|unix.BPF_A, 0, 0, 0)}, 0xc000003e, false},
		// Native order: the low word first.
		{"ip low", []unix.SockFilter{ld(8), ins(unix.BPF_RET|unix.BPF_A, 0, 0, 0)}, 0x55667788, false},
		{"arg0 high", []unix.SockFilter{ld(20), ins(unix.BPF_RET|unix.BPF_A, 0, 0, 0)}, 0xaaaabbbb, false},
		{"and, jeq", []unix.SockFilter{ld(16), ins(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0, 0, 0xff),
			ins(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 1, 0xdd), ret(1), ret(2)}, 1, false},
		{"jgt false", []unix.SockFilter{ld(24), ins(unix.BPF_JMP|unix.BPF_JGT|unix.BPF_K, 0, 1, 5), ret(1), ret(2)}, 2, false},
		{"jge true", []unix.SockFilter{ld(24), ins(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, 0, 1, 5), ret(1), ret(2)}, 1, false},
		{"jset", []unix.SockFilter{ld(24), ins(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, 1, 0, 4), ret(1), ret(2)}, 2, false},
		{"ja, x", []unix.SockFilter{ins(unix.BPF_LDX|unix.BPF_IMM, 0, 0, 7), ins(unix.BPF_JMP|unix.BPF_JA, 0, 0, 1), ret(1),
			ins(unix.BPF_MISC|unix.BPF_TXA, 0, 0, 0), ins(unix.BPF_ST, 0, 0, 3), ins(unix.BPF_LD|unix.BPF_MEM, 0, 0, 3),
			ins(unix.BPF_RET|unix.BPF_A, 0, 0, 0)}, 7, false},
		{"unaligned load", []unix.SockFilter{ld(2), ret(1)}, 0, true},
		{"load past the data", []unix.SockFilter{ld(64), ret(1)}, 0, true},
		{"jump past the end", []unix.SockFilter{ld(0), ins(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 3, 3, 0), ret(1)}, 0, true},
		{"no return", []unix.SockFilter{ld(0)}, 0, true},
		{"byte load", []unix.SockFilter{ins(unix.BPF_LD|unix.BPF_B|unix.BPF_ABS, 0, 0, 0), ret(1)}, 0, true},
	} {
		got, err := runSeccompBPF(tc.prog, d)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: %#x, %v; want %#x, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// Our filters give the same answers in both interpreters.
func TestSeccompBPFInterpreterAgreesWithVM(t *testing.T) {
	s := denyHostname()
	s.Architectures = []specs.Arch{specs.ArchX86, specs.ArchX32}
	s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActKillProcess,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x1_0000_0008, Op: specs.OpGreaterEqual}}})
	f := compileVM(t, s)
	prog, err := compileSeccompFor(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []call{x86("sethostname"), x86("read"), i386("setdomainname"), x32("sethostname"),
		x86("personality", 8), x86("personality", 0x1_0000_0008), x86("personality", 0x2_0000_0000),
		i386("personality", 8), {arch: 0xc00000b7, nr: 1}} {
		got, err := runSeccompBPF(prog.Program, &seccompData{nr: c.nr, arch: c.arch, args: c.args})
		if want := f.run(c); err != nil || got != want {
			t.Errorf("%+v: %#x, %v; the VM says %#x", c, got, err, want)
		}
	}
}
