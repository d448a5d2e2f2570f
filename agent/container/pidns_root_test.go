package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/internal/roottest"
	"github.com/msb-runtime/msb/agent/mount"
)

// pidNSContainer creates a container on a busybox overlay whose spec has
// the given namespaces, proc on /proc, a mask and a read-only path in it.
func pidNSContainer(t *testing.T, id string, ns []specs.LinuxNamespace) (*Container, string) {
	t.Helper()
	return pidNSContainerWith(t, Config{Planner: mount.Planner{}, CgroupParent: cgroupParent(t), NSEnter: roottest.NSEnter(t)}, id, ns)
}

func pidNSContainerWith(t *testing.T, cfg Config, id string, ns []specs.LinuxNamespace) (*Container, string) {
	t.Helper()
	image := imageDir(t)
	for _, a := range []string{"ps", "tr", "grep", "readlink", "mount", "unshare", "true", "cut"} {
		os.Symlink("busybox", filepath.Join(image, "bin", a))
	}
	dir := t.TempDir()
	rw, root := filepath.Join(dir, "rw"), filepath.Join(dir, "rootfs")
	plan := []*api.Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: rw},
		{Type: "overlay", Source: "overlay", Target: root, Mkdirs: []string{rw + "/upper", rw + "/work"},
			Options: []string{"lowerdir=" + image, "upperdir=" + rw + "/upper", "workdir=" + rw + "/work"}},
	}
	s := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Mounts:  append([]specs.Mount{}, defaultSpecMounts[:4]...),
		Linux: &specs.Linux{
			Namespaces:    ns,
			MaskedPaths:   []string{"/proc/version", "/proc/acpi", "/proc/nonexistent"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
	return createSpec(t, cfg, id, plan, s), dir
}

// createSpec creates container id from plan and s, destroyed when the test
// ends.
func createSpec(t *testing.T, cfg Config, id string, plan []*api.Mount, s specs.Spec) *Container {
	t.Helper()
	b, _ := json.Marshal(s)
	c, err := Create(context.Background(), cfg, id, plan, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	return c
}

func TestRootPIDNamespace(t *testing.T) {
	c, dir := pidNSContainer(t, "pidns", []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}})
	initP := startInit(t, c)
	if initP.Pid() <= 1 {
		t.Fatalf("init pid %d is not the agent's view", initP.Pid())
	}
	initNS, err := os.Readlink("/proc/" + strconv.Itoa(initP.Pid()) + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	selfNS, _ := os.Readlink("/proc/self/ns/pid")
	if initNS == selfNS {
		t.Fatal("init shares the agent's PID namespace")
	}

	// A long exec, to see it from another exec and to be killed with the
	// namespace.
	long, err := c.AddProcess("long")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartProcess(long, &specs.Process{Args: []string{"sleep", "99"}, Env: []string{"PATH=/bin"}}, nil); err != nil {
		t.Fatal(err)
	}
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(long.Pid()) + "/ns/pid"); ns != initNS {
		t.Fatalf("exec in PID namespace %q, init in %q", ns, initNS)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/pid_for_children")
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != selfNS {
			t.Fatalf("agent thread %s left in %q", task, ns)
		}
	}

	script := `tr '\0' ' ' < /proc/1/cmdline; echo; echo self=$$; ls /proc | grep '^[0-9]' | tr '\n' ' '; echo;
ps -o pid,args; wc -c < /proc/version; ls /proc/acpi 2>/dev/null | wc -l;
echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo sysrw || echo sysro`
	out, status := run(t, c, "e0", "sh", "-c", script)
	if status != 0 {
		t.Fatalf("status %d:\n%s", status, out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "sleep 100 " {
		t.Errorf("/proc/1/cmdline = %q, want the init's:\n%s", lines[0], out)
	}
	if lines[1] == "self=1" || len(lines[1]) > len("self=99") {
		t.Errorf("exec's own pid %q is not a small pid of the namespace:\n%s", lines[1], out)
	}
	for _, f := range strings.Fields(lines[2]) {
		if n, _ := strconv.Atoi(f); n > 200 {
			t.Errorf("/proc shows pid %d, outside the namespace:\n%s", n, out)
		}
	}
	for _, want := range []string{"sleep 100", "sleep 99", "ps -o pid,args", "\n0\n0\n", "sysro"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, ".test") {
		t.Errorf("ps shows the agent:\n%s", out)
	}

	// The end of the init ends the namespace: the exec is killed.
	if err := initP.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e, err := long.Wait(ctx); err != nil || e.Status != 137 {
		t.Fatalf("exec after init exit: %+v %v", e, err)
	}
	if e, err := initP.Wait(ctx); err != nil || e.Status != 137 {
		t.Fatalf("init: %+v %v", e, err)
	}
	if _, err := c.AddProcess("e2"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("exec after the init exited: %v", err)
	}
	if err := c.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), dir) {
		t.Fatalf("mounts left under %s:\n%s", dir, b)
	}
}

// A container without a pid namespace entry shares the VM's PID namespace
// and its /proc; a host namespace path is refused.
func TestRootNoPIDNamespace(t *testing.T) {
	c, _ := pidNSContainer(t, "nopidns", nil)
	initP := startInit(t, c)
	out, status := run(t, c, "e0", "sh", "-c", `echo self=$$; ls /proc/`+strconv.Itoa(initP.Pid())+` >/dev/null && echo seesinit; wc -c < /proc/version`)
	if status != 0 {
		t.Fatalf("status %d:\n%s", status, out)
	}
	if !strings.Contains(out, "seesinit") || strings.Contains(out, "self=1\n") || !strings.Contains(out, "\n0\n") {
		t.Errorf("output:\n%s", out)
	}
	self, _ := os.Readlink("/proc/self/ns/pid")
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(initP.Pid()) + "/ns/pid"); ns != self {
		t.Errorf("init in PID namespace %q, agent in %q", ns, self)
	}
	b, _ := json.Marshal(specs.Spec{Version: specs.Version, Root: &specs.Root{Path: "rootfs"},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"}}}})
	if _, err := Create(context.Background(), Config{Planner: mount.Planner{}}, "hostpid", nil, b); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a host PID namespace path: %v", err)
	}
}

// A container whose spec names "container:<id>" joins that container's PID
// namespace (a CRI pod in POD mode): it sees the other's init as PID 1,
// and its own /proc is of that namespace.
func TestRootJoinPIDNamespace(t *testing.T) {
	sandbox, _ := pidNSContainer(t, "sandbox", []specs.LinuxNamespace{{Type: specs.PIDNamespace}})
	sbInit := startInit(t, sandbox)
	cfg := Config{Planner: mount.Planner{}, CgroupParent: cgroupParent(t), NSEnter: roottest.NSEnter(t), NamespaceOf: func(id, kind string) (*os.File, error) {
		if id != "sandbox" {
			return nil, errdefs.ErrNotFound
		}
		return sandbox.OpenNamespace(kind)
	}}
	member, _ := pidNSContainerWith(t, cfg, "member", []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: api.ContainerNamespace("sandbox")}})
	mInit := startInit(t, member)
	sbNS, _ := os.Readlink("/proc/" + strconv.Itoa(sbInit.Pid()) + "/ns/pid")
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(mInit.Pid()) + "/ns/pid"); ns != sbNS {
		t.Fatalf("member init in PID namespace %q, sandbox's is %q", ns, sbNS)
	}
	out, status := run(t, member, "e0", "sh", "-c", `tr '\0' ' ' < /proc/1/cmdline; echo; echo self=$$`)
	if status != 0 || !strings.HasPrefix(out, "sleep 100 \n") || strings.Contains(out, "self=1\n") {
		t.Fatalf("status %d, output:\n%s", status, out)
	}

	orphan, _ := pidNSContainerWith(t, cfg, "orphan", []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: api.ContainerNamespace("gone")}})
	p, err := orphan.AddProcess("")
	if err != nil {
		t.Fatal(err)
	}
	if err := orphan.StartProcess(p, &specs.Process{Args: []string{"true"}, Env: []string{"PATH=/bin"}}, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("joining a missing container's namespace: %v", err)
	}
}

// TestRootMountNamespace: a container with a mount namespace is rooted at
// its root with pivot_root: the agent's mounts are not in its mount table,
// what it mounts stays out of the agent's, it may make a user namespace of
// its own (the kernel refuses that to a chrooted process), and an exec is
// in the same mount namespace.
func TestRootMountNamespace(t *testing.T) {
	c, dir := pidNSContainer(t, "mntns", []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}})
	initP := startInit(t, c)
	script := `cut -d' ' -f5 /proc/self/mountinfo | grep -c ` + dir + `; mount -t tmpfs tmpfs /tmp && echo mounted;
unshare -U true && echo userns; readlink /proc/self/ns/mnt`
	out, status := run(t, c, "e0", "sh", "-c", script)
	if status != 0 {
		t.Fatalf("status %d:\n%s", status, out)
	}
	initNS, _ := os.Readlink("/proc/" + strconv.Itoa(initP.Pid()) + "/ns/mnt")
	if want := "0\nmounted\nuserns\n" + initNS + "\n"; out != want {
		t.Errorf("got %q, want %q (the agent's paths hidden, a private mount, a nested user namespace, the init's mount namespace)", out, want)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), filepath.Join(c.Root, "tmp")+" ") {
		t.Errorf("the container's tmpfs on /tmp is in the agent's mount table")
	}
}
