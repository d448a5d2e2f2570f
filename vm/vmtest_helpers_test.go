//go:build vmtest

package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
)

// The VM tests boot the installed guest (hack/install puts it in
// MSB_SHARE) with layers they build with mkfs.erofs. They need root.

func share(t *testing.T, name string) string {
	p := filepath.Join(DefaultShare(), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("guest artifact missing (run hack/setup): %v", err)
	}
	return p
}

func tool(t *testing.T, name string) string {
	for _, dir := range []string{filepath.Join(DefaultPrefix, "erofs-utils", "bin"), "/usr/sbin", "/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); exists(p) {
			return p
		}
	}
	t.Fatalf("%s not found (run hack/setup)", name)
	return ""
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// layers builds the test image: L1 has busybox (applets as hard links),
// /etc/gone and /opq/{old1,old2}; L2 whites out /etc/gone, makes /opq
// opaque with /opq/new, and adds /l2.
func layers(t *testing.T, dir string) (l1, l2 string) {
	root1 := filepath.Join(dir, "l1")
	for _, d := range []string{"bin", "etc", "opq", "proc", "dev", "tmp"} {
		must(t, os.MkdirAll(filepath.Join(root1, d), 0o755))
	}
	bb := filepath.Join(root1, "bin", "busybox")
	sh(t, "cp", "/bin/busybox", bb)
	for _, a := range []string{"sh", "cat", "ls", "echo", "sleep", "sync", "uname", "id", "pwd", "env", "true"} {
		must(t, os.Link(bb, filepath.Join(root1, "bin", a)))
	}
	write(t, filepath.Join(root1, "etc", "gone"), "lower\n")
	write(t, filepath.Join(root1, "etc", "kept"), "kept\n")
	write(t, filepath.Join(root1, "opq", "old1"), "1")
	write(t, filepath.Join(root1, "opq", "old2"), "2")
	root2 := filepath.Join(dir, "l2")
	must(t, os.MkdirAll(filepath.Join(root2, "etc"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root2, "opq"), 0o755))
	write(t, filepath.Join(root2, "l2"), "from l2\n")
	write(t, filepath.Join(root2, "opq", "new"), "new")
	// overlayfs whiteout: a 0/0 character device; opaque: trusted xattr.
	must(t, unix.Mknod(filepath.Join(root2, "etc", "gone"), unix.S_IFCHR|0o600, 0))
	must(t, unix.Setxattr(filepath.Join(root2, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	mkfs := tool(t, "mkfs.erofs")
	l1, l2 = filepath.Join(dir, "l1.erofs"), filepath.Join(dir, "l2.erofs")
	sh(t, mkfs, "--quiet", "-T0", l1, root1)
	sh(t, mkfs, "--quiet", "-T0", l2, root2)
	return l1, l2
}

func ext4(t *testing.T, path string, mib int) {
	f, err := os.Create(path)
	must(t, err)
	must(t, f.Truncate(int64(mib)<<20))
	f.Close()
	sh(t, tool(t, "mkfs.ext4"), "-q", "-F", path)
}

func sum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	must(t, err)
	return sha256.Sum256(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, s string) { must(t, os.WriteFile(path, []byte(s), 0o644)) }

// fixture is one booted VM with the 2-layer container "c1" created.
type fixture struct {
	vm      *VM
	dir     string
	l1, l2  string
	upper   string
	sums    map[string][32]byte
	backend string
}

func baseSpec(t *testing.T, dir string) Spec {
	return Spec{
		VCPUs: 1, MemoryMiB: 256,
		Kernel:      Kernel{ELF: share(t, "kernel.elf"), Krunfw: share(t, "libkrunfw.so.5")},
		BootDisk:    share(t, "boot.erofs"),
		AgentSocket: filepath.Join(dir, "agent.sock"),
		ConsoleLog:  filepath.Join(dir, "console.log"),
	}
}

func testOptions(backend string) Options {
	return Options{Backend: backend, DieWithParent: true, BootTimeout: 60 * time.Second, VMM: vmmPath()}
}

func vmmPath() string {
	if p := os.Getenv("MSB_VMM"); p != "" {
		return p
	}
	return filepath.Join(DefaultPrefix, "bin", "msb-vmm")
}

func boot(t *testing.T, backend string) *fixture { return bootWith(t, backend, nil) }

// bootWith boots the fixture with edit applied to its spec first.
func bootWith(t *testing.T, backend string, edit func(*Spec)) *fixture {
	if os.Geteuid() != 0 {
		t.Fatal("VM tests need root")
	}
	dir := t.TempDir()
	f := &fixture{dir: dir, backend: backend, upper: filepath.Join(dir, "rw.img")}
	f.l1, f.l2 = layers(t, dir)
	ext4(t, f.upper, 64)
	f.sums = map[string][32]byte{f.l1: sum(t, f.l1), f.l2: sum(t, f.l2)}
	spec := baseSpec(t, dir)
	spec.Disks = []Disk{
		{ID: "l1", Path: f.l1, Format: "raw", ReadOnly: true},
		{ID: "l2", Path: f.l2, Format: "raw", ReadOnly: true},
		{ID: "rw", Path: f.upper, Format: "raw"},
	}
	if edit != nil {
		edit(&spec)
	}
	ctx := context.Background()
	v, err := Start(ctx, testOptions(backend), spec)
	if err != nil {
		t.Fatalf("start VM: %v", err)
	}
	f.vm = v
	t.Cleanup(func() { v.Kill() })
	f.create(t, "c1")
	return f
}

// create mounts the container's root: both layers, the ext4 upper and
// the overlay on top, as rootfs/ plans it for the EROFS snapshotter.
func (f *fixture) create(t *testing.T, id string) {
	base := "/run/msb/c/" + id
	plan := []*api.Mount{
		{Type: "erofs", Source: "disk:l1", Target: base + "/layers/0", Options: []string{"ro"}},
		{Type: "erofs", Source: "disk:l2", Target: base + "/layers/1", Options: []string{"ro"}},
		{Type: "ext4", Source: "disk:rw", Target: base + "/upper", Options: []string{"rw"}},
		{Type: "overlay", Source: "overlay", Target: base + "/rootfs",
			Mkdirs:  []string{base + "/upper/upper:0755", base + "/upper/work:0755"},
			Options: []string{"lowerdir=" + base + "/layers/1:" + base + "/layers/0", "upperdir=" + base + "/upper/upper", "workdir=" + base + "/upper/work"}},
	}
	spec := specs.Spec{Version: specs.Version, Hostname: "vmtest", Root: &specs.Root{Path: base + "/rootfs"},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}}}
	b, err := json.Marshal(&spec)
	must(t, err)
	if _, err := f.vm.Agent.CreateContainer(context.Background(), &api.CreateContainerRequest{Id: id, Rootfs: plan, Spec: b}); err != nil {
		t.Fatalf("create container: %v\n%s", err, logTail(f.vm.spec.ConsoleLog, 4096))
	}
	// Execs join a running container, as under containerd: an init
	// process that only waits.
	proc, _ := json.Marshal(&specs.Process{Args: []string{"sleep", "100000"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if _, err := f.vm.Agent.StartProcess(context.Background(), &api.StartProcessRequest{ContainerId: id, Process: proc}); err != nil {
		t.Fatalf("start init: %v", err)
	}
}

type result struct {
	stdout, stderr string
	status         uint32
}

// start starts a process with stdout and stderr streams (and stdin when
// given) and returns a function that waits for it.
func (f *fixture) start(t *testing.T, execID string, stdin *string, args ...string) func() result {
	t.Helper()
	ctx := context.Background()
	a := f.vm.Agent
	var outs [3]io.ReadWriteCloser
	for fd := api.Stdin; fd <= api.Stderr; fd++ {
		if fd == api.Stdin && stdin == nil {
			continue
		}
		s, err := a.OpenStdio(api.StdioHeader{ContainerID: "c1", ExecID: execID, FD: fd})
		must(t, err)
		outs[fd] = s
	}
	proc, _ := json.Marshal(&specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"})
	_, err := a.StartProcess(ctx, &api.StartProcessRequest{ContainerId: "c1", ExecId: execID, Process: proc,
		Stdin: stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	if stdin != nil {
		go func() { io.WriteString(outs[api.Stdin], *stdin); outs[api.Stdin].Close() }()
	}
	var wg sync.WaitGroup
	var bufs [3]bytes.Buffer
	for fd := api.Stdout; fd <= api.Stderr; fd++ {
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(&bufs[fd], outs[fd]) }()
	}
	return func() result {
		w, err := a.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c1", ExecId: execID})
		must(t, err)
		wg.Wait()
		return result{bufs[api.Stdout].String(), bufs[api.Stderr].String(), w.ExitStatus}
	}
}

func (f *fixture) run(t *testing.T, execID string, args ...string) result {
	t.Helper()
	return f.start(t, execID, nil, args...)()
}

// leftovers lists live processes whose command line mentions dir: a VMM
// or virtiofsd a test started must never outlive it.
func leftovers(dir string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}
