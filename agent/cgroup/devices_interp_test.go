package cgroup

import (
	"testing"

	"github.com/cilium/ebpf/asm"
)

// runFilter interprets a device filter the way the kernel runs it, for the
// request (typ, access) on major:minor, and returns the verdict. It knows
// only the instructions deviceFilter emits and fails the test on others.
func runFilter(t *testing.T, insts asm.Instructions, typ, access, major, minor uint32) bool {
	t.Helper()
	ctx := [3]uint32{access<<16 | typ, major, minor}
	labels := map[string]int{}
	for i, ins := range insts {
		if s := ins.Symbol(); s != "" {
			labels[s] = i
		}
	}
	var r [11]uint64
	for pc, steps := 0, 0; pc < len(insts); pc, steps = pc+1, steps+1 {
		if steps > len(insts) { // the filter has no backward jumps
			t.Fatalf("filter loops at %d", pc)
		}
		ins := insts[pc]
		op := ins.OpCode
		switch cls := op.Class(); {
		case cls == asm.LdXClass && op.Mode() == asm.MemMode && op.Size() == asm.Word && ins.Src == asm.R1:
			if ins.Offset < 0 || ins.Offset > 8 || ins.Offset%4 != 0 {
				t.Fatalf("load outside the context: %v", ins)
			}
			r[ins.Dst] = uint64(ctx[ins.Offset/4])
		case cls == asm.ALUClass:
			r[ins.Dst] = uint64(alu32(t, ins, uint32(r[ins.Dst]), operand(ins, r)))
		case cls == asm.JumpClass && op.JumpOp() == asm.Exit:
			return r[asm.R0] != 0
		case cls == asm.Jump32Class:
			if jump32(t, ins, uint32(r[ins.Dst]), operand(ins, r)) {
				to, ok := labels[ins.Reference()]
				if !ok || to <= pc {
					t.Fatalf("jump to %q: no such label after %d", ins.Reference(), pc)
				}
				pc = to - 1
			}
		default:
			t.Fatalf("instruction %d not interpreted: %v", pc, ins)
		}
	}
	t.Fatal("filter runs past its end")
	return false
}

func operand(ins asm.Instruction, r [11]uint64) uint32 {
	if ins.OpCode.Source() == asm.RegSource {
		return uint32(r[ins.Src])
	}
	return uint32(ins.Constant)
}

func alu32(t *testing.T, ins asm.Instruction, dst, src uint32) uint32 {
	switch ins.OpCode.ALUOp() {
	case asm.Mov:
		return src
	case asm.And:
		return dst & src
	case asm.RSh:
		return dst >> src
	}
	t.Fatalf("ALU op not interpreted: %v", ins)
	return 0
}

func jump32(t *testing.T, ins asm.Instruction, dst, src uint32) bool {
	switch ins.OpCode.JumpOp() {
	case asm.JEq:
		return dst == src
	case asm.JNE:
		return dst != src
	}
	t.Fatalf("jump op not interpreted: %v", ins)
	return false
}
