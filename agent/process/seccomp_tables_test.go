package process

import (
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// x32 has 36 calls at its own numbers, 512..547, which the x86_64 ABI has
// at others (Linux's syscall_64.tbl; libseccomp's x32 table agrees). A
// rule for one of them must land on the x32 number, every time: the
// library's x32 table lists both numbers under the same name.
func TestSeccompX32Numbers(t *testing.T) {
	x32Own := map[string][2]uint32{ // name: x32 number, x86_64 number
		"rt_sigaction": {512, 13}, "ioctl": {514, 16}, "readv": {515, 19},
		"execve": {520, 59}, "ptrace": {521, 101}, "setsockopt": {541, 54},
		"io_submit": {544, 209}, "pwritev2": {547, 328},
	}
	var names []string
	for nr := 512; nr <= 547; nr++ {
		name, ok := arch.X32.SyscallNumbers[nr]
		if !ok {
			t.Fatalf("x32 table has no call %d", nr)
		}
		names = append(names, name)
	}
	// x86_64-only calls that x32 does not have at all.
	gone := map[string]uint32{"uselib": 134, "set_thread_area": 205, "vserver": 236}
	for name := range gone {
		names = append(names, name)
	}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{{Names: names, Action: specs.ActKillProcess}}}
	f := compileVM(t, s)
	x86 := uint32(arch.X86_64.ID)
	for nr := uint32(512); nr <= 547; nr++ {
		f.expect(call{arch: x86, nr: x32SyscallBit | nr}, retKillProcess)
		// Not an x86_64 call: unknown numbers get the default.
		f.expect(call{arch: x86, nr: nr}, retAllow)
	}
	for name, nrs := range x32Own {
		if arch.X32.SyscallNumbers[int(nrs[0])] != name {
			t.Fatalf("x32 %d is %q, not %s", nrs[0], arch.X32.SyscallNumbers[int(nrs[0])], name)
		}
		f.expect(call{arch: x86, nr: x32SyscallBit | nrs[1]}, retAllow) // no such x32 call
		f.expect(call{arch: x86, nr: nrs[1]}, retKillProcess)           // the x86_64 one
	}
	for _, nr := range gone {
		f.expect(call{arch: x86, nr: x32SyscallBit | nr}, retAllow)
		f.expect(call{arch: x86, nr: nr}, retKillProcess)
	}
}

func TestSeccompSyscallTables(t *testing.T) {
	tables, err := syscallTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*arch.Info{arch.X86_64, arch.X32, arch.I386, arch.AARCH64, arch.ARM} {
		if len(tables[a.Name]) < 300 {
			t.Errorf("%s: %d calls", a.Name, len(tables[a.Name]))
		}
	}
	if n := len(tables[arch.X86_64.Name]) - len(tables[arch.X32.Name]); n != 11 {
		// The 47 x86_64-only entries, 36 of which x32 has at 512..547.
		t.Errorf("x32 has %d calls fewer than x86_64, want 11", n)
	}
	if _, err := invertSyscalls(map[int]string{13: "rt_sigaction", 512: "rt_sigaction"}); err == nil ||
		!strings.Contains(err.Error(), "two numbers") {
		t.Errorf("duplicate name: %v", err)
	}
}
