package container

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/internal/roottest"
	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == process.InitArg {
		process.RunInit()
	}
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) //nolint:errcheck
	os.Exit(m.Run())
}

// imageDir is a busybox "image" for the overlay's lower layer.
func imageDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	return roottest.BusyboxRoot(t, []string{"proc", "sys", "dev", "etc", "tmp"},
		"sh", "cat", "ls", "sleep", "touch", "echo", "wc", "stat", "tty")
}

func cgroupParent(t *testing.T) string { return roottest.CgroupParent(t) }

func testSpec() []byte {
	s := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: append(append([]specs.Mount{}, defaultSpecMounts[:7]...),
			specs.Mount{Destination: "/etc/msb", Type: "bind", Source: "/proc/self", Options: []string{"rbind", "ro"}}),
		Linux: &specs.Linux{
			Namespaces:    []specs.LinuxNamespace{{Type: specs.CgroupNamespace}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/version", "/proc/nonexistent", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
			Devices:       []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
			Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"sethostname"}, Action: specs.ActErrno}}},
		},
	}
	b, _ := json.Marshal(s)
	return b
}

func run(t *testing.T, c *Container, exec string, args ...string) (string, uint32) {
	t.Helper()
	p, err := c.AddProcess(exec)
	if err != nil {
		t.Fatal(err)
	}
	streams := map[int]net.Conn{}
	outs := make([]chan string, 3)
	for fd := 1; fd <= 2; fd++ {
		agent, host := net.Pipe()
		streams[fd] = agent
		outs[fd] = make(chan string, 1)
		go func() { b, _ := io.ReadAll(host); outs[fd] <- string(b) }()
	}
	spec := &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"}
	if err := c.StartProcess(p, spec, streams); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return <-outs[1] + <-outs[2], e.Status
}

func TestRootContainer(t *testing.T) {
	image := imageDir(t)
	dir := t.TempDir()
	rw, root := filepath.Join(dir, "rw"), filepath.Join(dir, "rootfs")
	plan := []*api.Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: rw},
		{Type: "overlay", Source: "overlay", Target: root, Mkdirs: []string{rw + "/upper", rw + "/work"},
			Options: []string{"lowerdir=" + image, "upperdir=" + rw + "/upper", "workdir=" + rw + "/work"}},
	}
	parent := cgroupParent(t)
	cfg := Config{Planner: mount.Planner{}, CgroupParent: parent}
	c, err := Create(context.Background(), cfg, "c1", plan, testSpec())
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			c.Destroy(context.Background())
		}
	}()
	if _, err := c.AddProcess("e0"); err == nil {
		t.Fatal("exec accepted without a running init")
	}
	initP := startInit(t, c)
	script := `ls /dev; echo; stat -c %F /dev/null; readlink /dev/ptmx;
cat /proc/self/cgroup; wc -c < /proc/version; ls /sys/firmware | wc -l;
touch /x 2>/dev/null && echo rootrw || echo rootro; touch /dev/shm/y && echo shmrw;
echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo sysrw || echo sysro; [ -t 0 ] || echo notty; ls /etc/msb/ >/dev/null && echo bind; cat /proc/self/status`
	out, status := run(t, c, "e0", "sh", "-c", script)
	if status != 0 {
		t.Fatalf("status %d, output:\n%s", status, out)
	}
	for _, want := range []string{"null", "zero", "urandom", "tty", "fuse", "pts", "shm", "fd", "stdin",
		"character special file", "pts/ptmx", "0\n0\n", "rootro", "shmrw", "sysro", "notty", "bind",
		"Seccomp:\t2\n"} { // the container's profile applies to execs
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if parent != "" && !strings.Contains(out, "0::/\n") {
		t.Errorf("no cgroup namespace:\n%s", out)
	}
	if parent != "" {
		initExitKillsExecs(t, c, initP)
	}
	if err := c.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), dir) {
		t.Fatalf("mounts left under %s", dir)
	}
	if parent != "" {
		if _, err := os.Stat(filepath.Join(parent, "c1")); !os.IsNotExist(err) {
			t.Fatalf("cgroup left: %v", err)
		}
	}
}

func startInit(t *testing.T, c *Container) *process.Process {
	t.Helper()
	p, err := c.AddProcess("")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartProcess(p, &specs.Process{Args: []string{"sleep", "100"}, Env: []string{"PATH=/bin"}}, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// initExitKillsExecs: the init's exit kills the rest of the container, as
// the end of its PID namespace would.
func initExitKillsExecs(t *testing.T, c *Container, initP *process.Process) {
	exe, err := c.AddProcess("e1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartProcess(exe, &specs.Process{Args: []string{"sleep", "100"}, Env: []string{"PATH=/bin"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddProcess("e1"); err == nil {
		t.Fatal("a running exec id was reused")
	}
	if err := initP.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e, err := exe.Wait(ctx); err != nil || e.Status != 137 {
		t.Fatalf("exec after init exit: %+v %v", e, err)
	}
	if e, err := initP.Wait(ctx); err != nil || e.Status != 143 {
		t.Fatalf("init: %+v %v", e, err)
	}
	if _, err := c.AddProcess("e2"); err == nil {
		t.Fatal("exec accepted after the init exited")
	}
}
