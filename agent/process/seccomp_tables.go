package process

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// The syscall tables the filter is compiled with: go-seccomp-bpf's, keyed
// by name here rather than through its arch.Info.SyscallNames. Its x32
// table is wrong for x32: its generator keeps every line of the kernel's
// syscall_64.tbl but those of ABI "x64" (there are none; x86_64-only lines
// say "64"), so x32 gets the x86_64-only numbers too, and the 36 calls
// x32 has at 512..547 (rt_sigaction, ioctl, readv, execve, ptrace, ...)
// appear twice. Inverting that table picks one of the two numbers by map
// order, at random: a rule for ptrace would land on the x86_64 number,
// which x32 does not have, and miss x32's own (521).

// x86_64Only lists the entries of ABI "64" in Linux's
// arch/x86/entry/syscalls/syscall_64.tbl (v6.19): calls the x86_64 ABI has
// and x32 does not (x32 has most of them at 512..547, the rest not at
// all). This is libseccomp's x32 table too. map_shadow_stack (453) was
// "64" up to about v6.9 and is "common" since, so x32 keeps it: on a
// kernel without it, the number fails with ENOSYS whatever the filter
// says.
var x86_64Only = []int{
	13, 15, 16, 19, 20, 45, 46, 47, 54, 55, 59, 101, 127, 128, 129, 131,
	134, 156, 174, 177, 178, 180, 205, 206, 209, 211, 214, 215, 222, 236,
	244, 246, 247, 273, 274, 278, 279, 295, 296, 297, 299, 307, 310, 311,
	322, 327, 328,
}

// syscallTable maps the names of one ABI's calls to their numbers (the x32
// bit not included).
type syscallTable map[string]int

// syscallTables are the tables by audit arch name, built once.
var syscallTables = sync.OnceValues(func() (map[string]syscallTable, error) {
	x32 := maps.Clone(arch.X32.SyscallNumbers)
	for _, nr := range x86_64Only {
		delete(x32, nr)
	}
	out := map[string]syscallTable{}
	for _, t := range []struct {
		info *arch.Info
		nrs  map[int]string
	}{
		{arch.X86_64, arch.X86_64.SyscallNumbers},
		{arch.X32, x32},
		{arch.I386, arch.I386.SyscallNumbers},
		{arch.AARCH64, arch.AARCH64.SyscallNumbers},
		{arch.ARM, arch.ARM.SyscallNumbers},
	} {
		names, err := invertSyscalls(t.nrs)
		if err != nil {
			return nil, fmt.Errorf("%s syscall table: %w", t.info.Name, err)
		}
		out[t.info.Name] = names
	}
	return out, nil
})

// invertSyscalls turns number -> name into name -> number, refusing a
// name with two numbers rather than picking one.
func invertSyscalls(nrs map[int]string) (syscallTable, error) {
	out := make(syscallTable, len(nrs))
	for _, nr := range slices.Sorted(maps.Keys(nrs)) {
		name := nrs[nr]
		if prev, ok := out[name]; ok {
			return nil, fmt.Errorf("%s has two numbers, %d and %d", name, prev, nr)
		}
		out[name] = nr
	}
	return out, nil
}

// multiplexedCall is a call reached through a multiplexer: the syscall
// nr with op in its first argument.
type multiplexedCall struct{ nr, op uint32 }

// i386Multiplexed are the i386 calls that socketcall(2) (102) and ipc(2)
// (117) also make, with their SYS_* (linux/net.h) and IPC operation
// (linux/ipc.h) numbers. Some have no call of their own on i386 (accept,
// send, recv, semop, semtimedop); the others got one in Linux 4.3 (socket
// calls) and 5.1 (IPC calls), but the multiplexers remain. A rule for one
// of them also applies to its multiplexer, as with libseccomp, so that
// denying socket(2) cannot be bypassed through socketcall(2).
var i386Multiplexed = map[string]multiplexedCall{
	"socket": {102, 1}, "bind": {102, 2}, "connect": {102, 3}, "listen": {102, 4},
	"accept": {102, 5}, "getsockname": {102, 6}, "getpeername": {102, 7},
	"socketpair": {102, 8}, "send": {102, 9}, "recv": {102, 10}, "sendto": {102, 11},
	"recvfrom": {102, 12}, "shutdown": {102, 13}, "setsockopt": {102, 14},
	"getsockopt": {102, 15}, "sendmsg": {102, 16}, "recvmsg": {102, 17},
	"accept4": {102, 18}, "recvmmsg": {102, 19}, "sendmmsg": {102, 20},
	"semop": {117, 1}, "semget": {117, 2}, "semctl": {117, 3}, "semtimedop": {117, 4},
	"msgsnd": {117, 11}, "msgrcv": {117, 12}, "msgget": {117, 13}, "msgctl": {117, 14},
	"shmat": {117, 21}, "shmdt": {117, 22}, "shmget": {117, 23}, "shmctl": {117, 24},
}
