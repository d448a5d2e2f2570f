//go:build cgo

package process

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Our compiler against libseccomp: each profile is compiled by both (the
// libseccomp filter built the way runc's libcontainer/seccomp builds it),
// both programs run in the interpreter of seccomp_bpf_test.go for every
// syscall number of every x86 ABI, several architecture values and many
// argument values, and their returns must be equal. Needs cgo and
// libseccomp (hack/setup installs libseccomp-dev): hack/test runs it with
// CGO_ENABLED=1, the other unit tests run without.

// diffABI is one ABI of the comparison.
type diffABI struct {
	info *arch.Info
	spec specs.Arch
	lib  libseccomp.ScmpArch
	bit  uint32 // x32's syscall bit
}

var diffABIs = []diffABI{
	{arch.X86_64, specs.ArchX86_64, libseccomp.ArchAMD64, 0},
	{arch.X32, specs.ArchX32, libseccomp.ArchX32, x32SyscallBit},
	{arch.I386, specs.ArchX86, libseccomp.ArchX86, 0},
}

// syscallCount bounds the numbers tried for each ABI (x86's tables end
// below 600; x32's own calls are 512..547).
const syscallCount = 1100

// newerThanLibseccomp are calls the kernel (and go-seccomp-bpf's table,
// Linux 6.15) has that libseccomp 2.5.4's tables do not: runc skips a
// name libseccomp does not know, we filter it. Their numbers are left out
// of the comparison for the ABIs where libseccomp does not know them.
var newerThanLibseccomp = map[string]bool{
	"uretprobe": true, "statmount": true, "listmount": true, "lsm_get_self_attr": true,
	"lsm_set_self_attr": true, "lsm_list_modules": true, "mseal": true, "setxattrat": true,
	"getxattrat": true, "listxattrat": true, "removexattrat": true, "open_tree_attr": true,
	// x32 has it since about Linux 6.10 (see seccomp_tables.go).
	"map_shadow_stack": true,
}

func TestSeccompMatchesLibseccomp(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("compares the x86 ABIs")
	}
	major, minor, micro := libseccomp.GetLibraryVersion()
	t.Logf("libseccomp %d.%d.%d", major, minor, micro)
	names := ourSyscallNames(t)
	for _, p := range append(defaultProfiles(t), blocklistProfiles()...) {
		t.Run(p.name, func(t *testing.T) {
			ours, err := compileSeccompFor(p.profile, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			lib := libseccompProgram(t, p.profile)
			d := newDiffer(t, p.profile, ours.Program, lib, names)
			d.compareAll()
			d.report()
		})
	}
}

// ourSyscallNames inverts our tables: ABI name -> number -> call name.
func ourSyscallNames(t *testing.T) map[string]map[uint32]string {
	tables, err := syscallTables()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[uint32]string{}
	for abiName, table := range tables {
		out[abiName] = map[uint32]string{}
		for name, nr := range table {
			out[abiName][uint32(nr)] = name
		}
	}
	return out
}

// libseccompProgram builds the profile's filter as runc does (its
// libcontainer/seccomp InitSeccomp and matchCall, after specconv split
// each rule into one per name) and exports libseccomp's program.
func libseccompProgram(t *testing.T, s *specs.LinuxSeccomp) []unix.SockFilter {
	t.Helper()
	def := libseccompAction(t, s.DefaultAction, s.DefaultErrnoRet)
	filter, err := libseccomp.NewFilter(def)
	if err != nil {
		t.Fatal(err)
	}
	defer filter.Release()
	for _, a := range s.Architectures {
		la, err := libseccomp.GetArchFromString(libseccompArchNames[a])
		if err != nil {
			t.Fatalf("arch %s: %v", a, err)
		}
		if err := filter.AddArch(la); err != nil {
			t.Fatal(err)
		}
	}
	nrules := 0
	for _, c := range s.Syscalls {
		nrules += len(c.Names)
	}
	if nrules > 32 { // runc's threshold for libseccomp's binary tree
		if err := filter.SetOptimize(2); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range s.Syscalls {
		act := libseccompAction(t, c.Action, c.ErrnoRet)
		if act == def {
			continue
		}
		for _, name := range c.Names {
			addLibseccompRule(t, filter, name, act, c.Args)
		}
	}
	return exportBPF(t, filter)
}

// libseccompArchNames are runc's specconv names for the spec's arches.
var libseccompArchNames = map[specs.Arch]string{
	specs.ArchX86_64: "amd64", specs.ArchX86: "x86", specs.ArchX32: "x32",
	specs.ArchAARCH64: "arm64", specs.ArchARM: "arm",
}

func libseccompAction(t *testing.T, a specs.LinuxSeccompAction, errnoRet *uint) libseccomp.ScmpAction {
	t.Helper()
	code := int16(unix.EPERM)
	if errnoRet != nil {
		code = int16(*errnoRet)
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(code)
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(code)
	case specs.ActTrap:
		return libseccomp.ActTrap
	case specs.ActAllow:
		return libseccomp.ActAllow
	case specs.ActLog:
		return libseccomp.ActLog
	}
	t.Fatalf("action %s", a)
	return libseccomp.ActInvalid
}

var libseccompOps = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual: libseccomp.CompareNotEqual, specs.OpLessThan: libseccomp.CompareLess,
	specs.OpLessEqual: libseccomp.CompareLessOrEqual, specs.OpEqualTo: libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual, specs.OpGreaterThan: libseccomp.CompareGreater,
	specs.OpMaskedEqual: libseccomp.CompareMaskedEqual,
}

// addLibseccompRule is runc's matchCall.
func addLibseccompRule(t *testing.T, filter *libseccomp.ScmpFilter, name string, act libseccomp.ScmpAction, args []specs.LinuxSeccompArg) {
	t.Helper()
	nr, err := libseccomp.GetSyscallFromName(name)
	if err != nil {
		return // unknown to libseccomp: runc skips it
	}
	if len(args) == 0 {
		if err := filter.AddRule(nr, act); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return
	}
	var conds []libseccomp.ScmpCondition
	var count [6]int
	for _, a := range args {
		c, err := libseccomp.MakeCondition(a.Index, libseccompOps[a.Op], a.Value, a.ValueTwo)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		conds = append(conds, c)
		count[a.Index]++
	}
	if slices.ContainsFunc(count[:], func(n int) bool { return n > 1 }) {
		for _, c := range conds {
			if err := filter.AddRuleConditional(nr, act, []libseccomp.ScmpCondition{c}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		return
	}
	if err := filter.AddRuleConditional(nr, act, conds); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func exportBPF(t *testing.T, filter *libseccomp.ScmpFilter) []unix.SockFilter {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "filter.bpf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := filter.ExportBPF(f); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || len(raw)%8 != 0 {
		t.Fatalf("libseccomp exported %d bytes", len(raw))
	}
	prog := make([]unix.SockFilter, len(raw)/8)
	for i := range prog { // struct sock_filter in the machine's order
		b := raw[8*i:]
		prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.LittleEndian.Uint32(b[4:])}
	}
	return prog
}

// differ runs both programs and collects where they disagree.
type differ struct {
	t         *testing.T
	ours, lib []unix.SockFilter
	covered   map[specs.Arch]bool
	values    []uint64
	combos    [][]specs.LinuxSeccompArg // conditions to satisfy together
	names     map[string]map[uint32]string
	runs      int
	skipped   map[string]int // numbers left out, by reason
	order     []string       // the calls that differ, first seen first
	byWhat    map[string]*difference
	badArch   int // calls of an uncovered ABI (normalised)
}

func newDiffer(t *testing.T, s *specs.LinuxSeccomp, ours, lib []unix.SockFilter, names map[string]map[uint32]string) *differ {
	d := &differ{t: t, ours: ours, lib: lib, names: names, skipped: map[string]int{},
		covered: map[specs.Arch]bool{specs.ArchX86_64: true}}
	for _, a := range s.Architectures {
		d.covered[a] = true
	}
	d.values = argValues(s)
	for _, c := range s.Syscalls {
		if len(c.Args) > 1 {
			d.combos = append(d.combos, c.Args)
		}
	}
	t.Logf("ours %d instructions, libseccomp %d; %d argument values, %d multi-argument rules",
		len(ours), len(lib), len(d.values), len(d.combos))
	return d
}

// argValues are the edges of 32 and 64 bits and, for each value in the
// profile, values on either side of it, in the other word and, for a
// mask, with bits in and out of it.
func argValues(s *specs.LinuxSeccomp) []uint64 {
	// Small numbers select the call of socketcall(2) and ipc(2).
	vs := []uint64{0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 32, 1<<32 + 1,
		0xffff_ffff_0000_0000, 0x7fff_ffff_ffff_ffff, 1 << 63, ^uint64(0), ^uint64(0) - 1}
	for i := range uint64(33) {
		vs = append(vs, i)
	}
	for _, c := range s.Syscalls {
		for _, a := range c.Args {
			vs = append(vs, near(a.Value)...)
			if a.Op == specs.OpMaskedEqual {
				v2, m := a.ValueTwo, a.Value
				vs = append(vs, near(v2)...)
				vs = append(vs, v2|^m, v2|(^m&0xffff_ffff), v2^(m&-m), v2^(m&(m-1)), m, v2|1<<32)
			}
		}
	}
	slices.Sort(vs)
	return slices.Compact(vs)
}

func near(v uint64) []uint64 {
	return []uint64{v, v - 1, v + 1, v ^ 1<<32, v + 1<<32, v & 0xffff_ffff, v >> 32, v | 0xffff_ffff_0000_0000}
}

// compareAll tries every number of every ABI, covered or not, then
// numbers and architectures no ABI has.
func (d *differ) compareAll() {
	for _, a := range diffABIs {
		for n := uint32(0); n < syscallCount; n++ {
			d.compareNumber(a, n)
		}
	}
	odd := []uint32{0x3fff_ffff, 0x4000_0000 + 5000, 0x7fff_ffff, 0x8000_0000, 0xc000_0000 + 1, 0xffff_fffe, 0xffff_ffff, 5000}
	for _, audit := range []uint32{uint32(arch.X86_64.ID), uint32(arch.I386.ID)} {
		for _, nr := range odd {
			d.compare(&seccompData{nr: nr, arch: audit}, "odd number")
		}
	}
	// Other machines' calls, and AUDIT_ARCH_X86_64 without its flags.
	for _, audit := range []uint32{uint32(arch.AARCH64.ID), uint32(arch.ARM.ID), 0, 0xffff_ffff, unix.AUDIT_ARCH_X86_64 &^ 0xc000_0000} {
		for n := uint32(0); n < syscallCount; n++ {
			d.compare(&seccompData{nr: n, arch: audit}, "other arch")
			d.compare(&seccompData{nr: n | x32SyscallBit, arch: audit}, "other arch")
		}
	}
}

func (d *differ) compareNumber(a diffABI, n uint32) {
	sd := seccompData{nr: n | a.bit, arch: uint32(a.info.ID)}
	if !d.covered[a.spec] {
		d.compare(&sd, a.info.Name+" not in the profile")
		return
	}
	ours := d.names[a.info.Name][n]
	lib, err := libseccomp.ScmpSyscall(int32(n | a.bit)).GetNameByArch(a.lib)
	if err != nil {
		lib = ""
	}
	if ours != lib {
		if lib == "" && newerThanLibseccomp[ours] {
			d.skipped[a.info.Name+" "+ours+" (newer than libseccomp)"]++
			return
		}
		d.differ(fmt.Sprintf("%s %d", a.info.Name, n), fmt.Sprintf("our table says %q, libseccomp's %q", ours, lib))
		return
	}
	what := fmt.Sprintf("%s %s (%d)", a.info.Name, ours, n)
	d.compare(&sd, what)
	for i := range sd.args {
		for _, v := range d.values {
			sd.args = [6]uint64{}
			sd.args[i] = v
			d.compare(&sd, what)
		}
	}
	for _, v := range d.values {
		sd.args = [6]uint64{v, v, v, v, v, v}
		d.compare(&sd, what)
	}
	for _, conds := range d.combos {
		d.compareCombos(&sd, conds, what)
	}
}

// compareCombos tries the cross product of the conditions' values.
func (d *differ) compareCombos(sd *seccompData, conds []specs.LinuxSeccompArg, what string) {
	var rec func(i int)
	rec = func(i int) {
		if i == len(conds) {
			d.compare(sd, what)
			return
		}
		c := conds[i]
		cands := near(c.Value)
		if c.Op == specs.OpMaskedEqual {
			cands = append(near(c.ValueTwo), c.ValueTwo|^c.Value, c.Value)
		}
		for _, v := range cands {
			sd.args[c.Index] = v
			rec(i + 1)
		}
	}
	sd.args = [6]uint64{}
	rec(0)
}

// covers says whether the filter covers the call's ABI.
func (d *differ) covers(sd *seccompData) bool {
	switch sd.arch {
	case uint32(arch.X86_64.ID):
		// Both compilers take numbers from the x32 bit up as x32's (the
		// kernel runs none above x32's own), except -1, which a tracer
		// sets to skip a call.
		return sd.nr < x32SyscallBit || sd.nr == skippedSyscall || d.covered[specs.ArchX32]
	case uint32(arch.I386.ID):
		return d.covered[specs.ArchX86]
	}
	return false
}

// compare runs both programs on sd.
func (d *differ) compare(sd *seccompData, what string) {
	d.runs++
	ours, err := runSeccompBPF(d.ours, sd)
	if err != nil {
		d.t.Fatalf("our program on %+v: %v", sd, err)
	}
	lib, err := runSeccompBPF(d.lib, sd)
	if err != nil {
		d.t.Fatalf("libseccomp's program on %+v: %v", sd, err)
	}
	if !d.covers(sd) {
		// A documented choice (seccomp.go): a call of an ABI the filter
		// does not cover kills the process; libseccomp's default
		// bad-architecture action, which runc keeps, kills the thread.
		if ours == unix.SECCOMP_RET_KILL_PROCESS && lib == unix.SECCOMP_RET_KILL_THREAD {
			d.badArch++
			return
		}
	}
	if ours != lib {
		d.differ(what, fmt.Sprintf("nr %#x arch %#x args %#x: ours %s, libseccomp %s",
			sd.nr, sd.arch, sd.args, retString(ours), retString(lib)))
	}
}

// difference is where the programs disagree on one call.
type difference struct {
	what, first string
	count       int
}

func (d *differ) differ(what, detail string) {
	if d.byWhat == nil {
		d.byWhat = map[string]*difference{}
	}
	if x, ok := d.byWhat[what]; ok {
		x.count++
		return
	}
	d.byWhat[what] = &difference{what: what, first: detail, count: 1}
	d.order = append(d.order, what)
}

func (d *differ) report() {
	d.t.Logf("%d calls compared, %d of an uncovered ABI (kill process vs kill thread)", d.runs, d.badArch)
	for _, k := range slices.Sorted(maps.Keys(d.skipped)) {
		d.t.Logf("left out: %s: %d", k, d.skipped[k])
	}
	if len(d.order) == 0 {
		return
	}
	total := 0
	for _, x := range d.byWhat {
		total += x.count
	}
	d.t.Errorf("%d differences in %d calls", total, len(d.order))
	for i, what := range d.order {
		if i == 100 {
			d.t.Errorf("... and %d more calls", len(d.order)-i)
			break
		}
		x := d.byWhat[what]
		d.t.Errorf("%s: %d, first %s", x.what, x.count, x.first)
	}
}

func retString(r uint32) string {
	data := r & unix.SECCOMP_RET_DATA
	switch r & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_KILL_PROCESS:
		return "KILL_PROCESS"
	case unix.SECCOMP_RET_KILL_THREAD:
		return "KILL_THREAD"
	case unix.SECCOMP_RET_TRAP:
		return fmt.Sprintf("TRAP(%d)", data)
	case unix.SECCOMP_RET_ERRNO:
		return fmt.Sprintf("ERRNO(%d)", data)
	case unix.SECCOMP_RET_TRACE:
		return fmt.Sprintf("TRACE(%d)", data)
	case unix.SECCOMP_RET_LOG:
		return "LOG"
	case unix.SECCOMP_RET_ALLOW:
		return "ALLOW"
	}
	return fmt.Sprintf("%#x", r)
}
