package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/internal/roottest"
)

// These tests start real processes in a chroot of a temporary busybox
// root; they need root (not a VM) and skip otherwise.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// busyboxRoot makes a root with a static busybox and its applets.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	root := roottest.BusyboxRoot(t, []string{"proc", "tmp", "etc"},
		"sh", "echo", "cat", "sleep", "id", "stty", "grep", "true", "printf", "hostname")
	if err := os.Mkdir(filepath.Join(root, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// withProc mounts proc in root for the test's duration.
func withProc(t *testing.T, root string) {
	t.Helper()
	target := filepath.Join(root, "proc")
	if err := unix.Mount("proc", target, "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
}

// hostEnds are the test's ends of a process's streams.
type hostEnds struct {
	stdin          net.Conn
	stdout, stderr *bytes.Buffer
	wg             sync.WaitGroup
}

func streams(fds ...int) (map[int]net.Conn, *hostEnds) {
	m := map[int]net.Conn{}
	h := &hostEnds{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	for _, fd := range fds {
		agent, host := net.Pipe()
		m[fd] = agent
		switch fd {
		case 0:
			h.stdin = host
		case 1, 2:
			buf := h.stdout
			if fd == 2 {
				buf = h.stderr
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				io.Copy(buf, host)
				host.Close()
			}()
		}
	}
	return m, h
}

func spec(args ...string) *specs.Process {
	return &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"}
}

func waitExit(t *testing.T, p *Process, within time.Duration) Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	e, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return e
}

func TestRootPipesAndExitCode(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	s, h := streams(1, 2)
	p := New("")
	err := p.Start(Options{Root: root, Spec: spec("sh", "-c", "echo out; echo err >&2; exit 3"), Streams: s})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 || p.State() == Created {
		t.Fatalf("started process: pid %d state %v", p.Pid(), p.State())
	}
	e := waitExit(t, p, 10*time.Second)
	h.wg.Wait()
	if e.Status != 3 || h.stdout.String() != "out\n" || h.stderr.String() != "err\n" {
		t.Fatalf("status %d stdout %q stderr %q", e.Status, h.stdout, h.stderr)
	}
	if time.Since(e.At) > 10*time.Second {
		t.Fatalf("exit time %v", e.At)
	}
}

func TestRootStdin(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	s, h := streams(0, 1)
	p := New("")
	if err := p.Start(Options{Root: root, Spec: spec("cat"), Streams: s}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(h.stdin, "hello\n")
	h.stdin.Close()
	if e := waitExit(t, p, 10*time.Second); e.Status != 0 {
		t.Fatalf("cat exited %d", e.Status)
	}
	h.wg.Wait()
	if h.stdout.String() != "hello\n" {
		t.Fatalf("stdout %q", h.stdout)
	}
}

func TestRootCloseStdin(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	s, h := streams(0, 1)
	p := New("")
	if err := p.Start(Options{Root: root, Spec: spec("cat"), Streams: s}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(h.stdin, "data\n")
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, p, 10*time.Second); e.Status != 0 {
		t.Fatalf("cat exited %d", e.Status)
	}
	h.wg.Wait()
	if h.stdout.String() != "data\n" {
		t.Fatalf("stdout %q", h.stdout)
	}
}

func TestRootExecErrors(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	for _, tc := range []struct {
		args []string
		cwd  string
		want string
	}{
		{[]string{"nosuchbin"}, "/", `exec: "nosuchbin": executable file not found in $PATH`},
		{[]string{"/bin/nosuch"}, "/", `exec: "/bin/nosuch": stat /bin/nosuch: no such file or directory`},
		{[]string{"/bin/noexec"}, "/", `exec: "/bin/noexec": permission denied`},
		{[]string{"true"}, "/private", `chdir to cwd "/private": permission denied`},
	} {
		s, h := streams(1)
		p := New("x")
		sp := spec(tc.args...)
		sp.Cwd = tc.cwd
		sp.User.UID = 1000 // so permission checks apply
		err := p.Start(Options{Root: root, Spec: sp, Streams: s})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
		h.wg.Wait() // the stream was closed
		if p.State() != Deleted {
			t.Errorf("%v: state %v after failed start", tc.args, p.State())
		}
	}
}

func TestRootSignal(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	p := New("")
	if err := p.Start(Options{Root: root, Spec: spec("sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, p, 10*time.Second); e.Status != 128+15 {
		t.Fatalf("status %d, want 143", e.Status)
	}
	if err := p.Signal(syscall.SIGTERM); err != ErrFinished {
		t.Fatalf("signal after exit: %v", err)
	}
}

func TestRootUserCapsLimits(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	withProc(t, root)
	s, h := streams(1, 2)
	sp := spec("sh", "-c", "id -u; id -g; id -G; ulimit -n; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; umask; pwd")
	sp.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{1001, 5}}
	sp.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
		Inheritable: []string{"CAP_KILL"}, Ambient: []string{"CAP_KILL"}}
	sp.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1234, Hard: 2048}}
	sp.NoNewPrivileges = true
	sp.Cwd = "/tmp/newdir"
	p := New("")
	if err := p.Start(Options{Root: root, Spec: sp, Streams: s}); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, p, 10*time.Second); e.Status != 0 {
		t.Fatalf("status %d, stderr %q", e.Status, h.stderr)
	}
	h.wg.Wait()
	want := "1000\n1001\n1001 5\n1234\nCapEff:\t0000000000000020\nCapBnd:\t0000000000000020\nNoNewPrivs:\t1\n0022\n/tmp/newdir\n"
	if h.stdout.String() != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s\nstderr: %s", h.stdout, want, h.stderr)
	}
}

func TestRootTerminal(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	s, h := streams(0, 1)
	sp := spec("sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo tty; stty size; read x; echo got $x")
	sp.Terminal = true
	sp.ConsoleSize = &specs.Box{Width: 100, Height: 30}
	p := New("")
	if err := p.Start(Options{Root: root, Spec: sp, Streams: s}); err != nil {
		t.Fatal(err)
	}
	if err := p.Resize(120, 40); err != nil {
		t.Fatal(err)
	}
	io.WriteString(h.stdin, "line\n")
	if e := waitExit(t, p, 10*time.Second); e.Status != 0 {
		t.Fatalf("status %d, output %q", e.Status, h.stdout)
	}
	h.wg.Wait()
	out := strings.ReplaceAll(h.stdout.String(), "\r", "")
	if !strings.Contains(out, "tty\n") || !strings.Contains(out, "got line\n") {
		t.Fatalf("terminal output %q", out)
	}
	if !strings.Contains(out, "30 100\n") && !strings.Contains(out, "40 120\n") {
		t.Fatalf("terminal size not applied: %q", out)
	}
}

func TestRootDrainBound(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	s, h := streams(1)
	p := New("e")
	// The background sleep keeps stdout open after sh exits.
	if err := p.Start(Options{Root: root, Spec: spec("sh", "-c", "sleep 30 & echo hi"), Streams: s, DrainIdle: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e := waitExit(t, p, 10*time.Second)
	h.wg.Wait()
	if e.Status != 0 || h.stdout.String() != "hi\n" {
		t.Fatalf("status %d stdout %q", e.Status, h.stdout)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("wait took %v despite the drain bound", d)
	}
	killSid(t, p.Pid())
}

// killSid kills the session a test process led (its leftovers).
func killSid(t *testing.T, sid int) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if s, err := unix.Getsid(pid); err == nil && s == sid {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// TestRootSeccomp runs processes under linux.seccomp profiles. Nothing here
// may change the host's hostname: the allowed sethostname calls set it to
// what it is.
func TestRootSeccomp(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	withProc(t, root)
	current, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	other := "foo"
	if len(current) == len(other) {
		other = "fooo"
	}
	allowAll := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"setdomainname"}, Action: specs.ActErrno},
	}}
	denyHostname := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"sethostname"}, Action: specs.ActErrno},
	}}
	// Denies sethostname(name, len) unless len is the current name's: an
	// argument condition evaluated by the kernel.
	denyOtherLength := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"sethostname"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: uint64(len(current)), Op: specs.OpNotEqual}}},
	}}
	// A default-deny profile in the style of the default ones. Without
	// no_new_privs the filter goes in before the setup stage drops its
	// capabilities, so, as with runc, it must allow what the Go runtime
	// does until execve (the poller's epoll calls included).
	names := []string{"epoll_pwait", "epoll_ctl", "read", "write", "close", "fstat", "newfstatat", "stat", "lstat", "mmap", "munmap",
		"mprotect", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "ioctl", "execve", "exit", "exit_group",
		"getuid", "geteuid", "getgid", "getegid", "getpid", "getppid", "uname", "arch_prctl", "set_tid_address",
		"futex", "sched_yield", "nanosleep", "clock_nanosleep", "sigaltstack", "gettid", "tgkill", "openat", "open",
		"fcntl", "getgroups", "setgroups", "setresuid", "setresgid", "capget", "capset", "prctl", "chdir", "getcwd",
		"madvise", "getrandom", "readlinkat", "faccessat2", "access", "set_robust_list", "rseq",
		"prlimit64", "wait4", "clone", "vfork", "dup2", "dup3"}
	defaultDeny := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			{Names: names, Action: specs.ActAllow},
		}}
	eperm := "Operation not permitted"
	for _, tc := range []struct {
		name    string
		profile *specs.LinuxSeccomp
		nnp     bool
		user    bool // uid 1000 with only CAP_KILL (and so no CAP_SYS_ADMIN)
		script  string
		want    string // in the output
		status  uint32
	}{
		{"no profile", nil, false, false, "hostname " + current + "; grep Seccomp: /proc/self/status", "Seccomp:\t0", 0},
		{"allowed", allowAll, false, false, "hostname " + current + " && echo ok; grep Seccomp: /proc/self/status", "ok\nSeccomp:\t2", 0},
		{"denied", denyHostname, false, false, "hostname " + other, eperm, 1},
		{"denied nnp", denyHostname, true, false, "hostname " + other, eperm, 1},
		{"denied as a user", denyHostname, false, true, "id -u; hostname " + other, "1000\n", 1},
		{"allowed as a user nnp", allowAll, true, true, "id -u; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status", "1000\nNoNewPrivs:\t1\nSeccomp:\t2", 0},
		{"arg condition denies", denyOtherLength, false, false, "hostname " + other, eperm, 1},
		{"arg condition allows", denyOtherLength, false, false, "hostname " + current + " && echo ok", "ok", 0},
		{"default deny", defaultDeny, false, false, "grep -q Seccomp: /proc/self/status && echo ok; hostname " + current + "; echo done", "ok\nhostname: sethostname: " + eperm + "\ndone", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, h := streams(1, 2)
			sp := spec("sh", "-c", "exec 2>&1; "+tc.script)
			sp.NoNewPrivileges = tc.nnp
			if tc.user {
				sp.User = specs.User{UID: 1000, GID: 1000}
				kill := []string{"CAP_KILL"}
				sp.Capabilities = &specs.LinuxCapabilities{Bounding: kill, Effective: kill, Permitted: kill}
			}
			p := New("")
			if err := p.Start(Options{Root: root, Spec: sp, Streams: s, Seccomp: tc.profile}); err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, p, 10*time.Second)
			h.wg.Wait()
			out := h.stdout.String()
			if e.Status != tc.status || !strings.Contains(out, tc.want) {
				t.Fatalf("status %d, output %q; want %d and %q", e.Status, out, tc.status, tc.want)
			}
		})
	}
	if h, _ := os.Hostname(); h != current {
		t.Fatalf("hostname changed from %q to %q", current, h)
	}
}

// A profile that cannot be compiled fails the start.
func TestRootSeccompBadProfile(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	s, h := streams(1)
	p := New("")
	bad := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/notify.sock"}
	err := p.Start(Options{Root: root, Spec: spec("true"), Streams: s, Seccomp: bad})
	if err == nil || !strings.Contains(err.Error(), "listenerPath") {
		t.Fatalf("error %v", err)
	}
	h.wg.Wait()
}
