package cgroup

import (
	"fmt"
	"os"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SetDevices installs the device controller that rules describe. Call it
// once, before any process joins the group: the program attaches with
// BPF_F_ALLOW_MULTI, so a second one would add to the first, and so do the
// programs a container attaches to groups below its own: the kernel runs
// them all and any of them denies. A policy that allows everything
// (privileged containers) attaches nothing, as there is nothing to deny.
func (g *Group) SetDevices(rules []DeviceRule) error {
	p, err := emulate(rules)
	if err != nil {
		return fmt.Errorf("device rules of cgroup %s: %w", g.Path, err)
	}
	if p.defaultAllow && len(p.except) == 0 {
		return nil
	}
	if err := attachDeviceFilter(g.Path, deviceFilter(p)); err != nil {
		return fmt.Errorf("device controller of cgroup %s: %w", g.Path, err)
	}
	return nil
}

// deviceFilter compiles p into a BPF_PROG_TYPE_CGROUP_DEVICE program: one
// block per exception, then the default. runc's devicefilter.go (itself
// after crun's ebpf.c) with one difference: a deny exception (on an
// allow-all default) matches a request that wants any of its access bits,
// as in the v1 kernel; runc's matches only requests it covers whole, so
// that its "deny c 1:3 w" still lets open(O_RDWR) through.
func deviceFilter(p *devicePolicy) asm.Instructions {
	// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
	// where access_type is access << 16 | type.
	insts := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.And.Imm32(asm.R2, 0xFFFF), // R2 = type
		asm.LoadMem(asm.R3, asm.R1, 0, asm.Word),
		asm.RSh.Imm32(asm.R3, 16),                // R3 = access
		asm.LoadMem(asm.R4, asm.R1, 4, asm.Word), // R4 = major
		asm.LoadMem(asm.R5, asm.R1, 8, asm.Word), // R5 = minor
	}
	rules := p.exceptions()
	for i, r := range rules {
		insts = append(insts, ruleBlock(r, "block-"+strconv.Itoa(i), "block-"+strconv.Itoa(i+1))...)
	}
	return append(insts,
		asm.Mov.Imm32(asm.R0, verdict(p.defaultAllow)).WithSymbol("block-"+strconv.Itoa(len(rules))),
		asm.Return(),
	)
}

// ruleBlock returns r's verdict when the request matches r, else jumps to
// next.
func ruleBlock(r DeviceRule, self, next string) asm.Instructions {
	typ := int32(unix.BPF_DEVCG_DEV_CHAR)
	if r.Type == devBlock {
		typ = unix.BPF_DEVCG_DEV_BLOCK
	}
	b := asm.Instructions{asm.JNE.Imm32(asm.R2, typ, next).WithSymbol(self)}
	if r.Access != accAll {
		b = append(b,
			asm.Mov.Reg32(asm.R1, asm.R3),
			asm.And.Imm32(asm.R1, int32(r.Access)))
		if r.Allow {
			// allowed only if r grants every bit asked for
			b = append(b, asm.JNE.Reg32(asm.R1, asm.R3, next))
		} else {
			// denied if r refuses any bit asked for
			b = append(b, asm.JEq.Imm32(asm.R1, 0, next))
		}
	}
	// 32-bit compares (runc's 64-bit ones never match a number above
	// MaxInt32: the immediate is sign-extended).
	if r.Major != anyNumber {
		b = append(b, asm.JNE.Imm32(asm.R4, int32(uint32(r.Major)), next))
	}
	if r.Minor != anyNumber {
		b = append(b, asm.JNE.Imm32(asm.R5, int32(uint32(r.Minor)), next))
	}
	return append(b, asm.Mov.Imm32(asm.R0, verdict(r.Allow)), asm.Return())
}

func verdict(allow bool) int32 {
	if allow {
		return 1
	}
	return 0
}

// attachDeviceFilter loads insts and attaches them to the group at dir.
func attachDeviceFilter(dir string, insts asm.Instructions) error {
	d, err := os.OpenFile(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.CGroupDevice,
		Instructions: insts,
		License:      "Apache",
	})
	if err != nil {
		return fmt.Errorf("load eBPF device filter: %w", err)
	}
	// The attachment holds the program; it goes with the group.
	defer prog.Close()
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  int(d.Fd()),
		Program: prog,
		Attach:  ebpf.AttachCGroupDevice,
		Flags:   unix.BPF_F_ALLOW_MULTI,
	})
	if err != nil {
		return fmt.Errorf("attach eBPF device filter: %w", err)
	}
	return nil
}
