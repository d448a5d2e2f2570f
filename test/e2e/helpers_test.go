//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

const (
	busybox  = "docker.io/library/busybox:latest"
	debianML = "docker.io/library/debian-ml:test"
	runcRT   = "io.containerd.runc.v2"
	msbRT    = "io.containerd.msb.v1"
)

// Settings, from the environment (hack/env and MSB_E2E_*); see test/README.md.
var (
	runtimeName string        // MSB_E2E_RUNTIME
	namespace   string        // MSB_E2E_NAMESPACE
	ctrTimeout  time.Duration // MSB_E2E_CTR_TIMEOUT: one ctr call, and one wait for a state
	ctrBin      string        // $MSB_PREFIX/bin/ctr
	socket      string        // MSB_CONTAINERD_SOCKET
	ctdRoot     string        // MSB_CONTAINERD_ROOT
	ctdState    string        // MSB_CONTAINERD_STATE
	ctdLog      string        // MSB_CONTAINERD_LOG
	repoRoot    string
	runToken    = strconv.FormatInt(int64(os.Getpid()), 36)
)

// VMM executables whose leftovers the leak checks look for.
var vmmNames = []string{"qemu-system-x86_64", "msb-vmm"}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if err := configure(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	started, err := startContainerd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	if started {
		defer func() {
			if out, err := exec.Command(filepath.Join(repoRoot, "hack/containerd-test"), "stop").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: hack/containerd-test stop: %v\n%s", err, out)
			}
		}()
	}
	if err := importImages(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	if left := ourContainers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: removing %d containers left by an earlier run: %v\n", len(left), left)
		for _, id := range left {
			_ = removeContainer(id)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: runtime %s, namespace %s, containerd %s\n", runtimeName, namespace, socket)

	code := m.Run()

	// Every test removes what it made; anything left is a bug in a test or in
	// the runtime's delete path.
	if left := ourContainers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: containers left after the tests: %v\n", left)
		for _, id := range left {
			_ = removeContainer(id)
		}
		code = 1
	}
	return code
}

func configure() error {
	for _, name := range []string{"MSB_PREFIX", "MSB_CONTAINERD_SOCKET", "MSB_CONTAINERD_ROOT",
		"MSB_CONTAINERD_STATE", "MSB_CONTAINERD_LOG", "MSB_CONTAINERD_CONFIG", "MSB_CONTAINERD_PIDFILE"} {
		if os.Getenv(name) == "" {
			return fmt.Errorf("%s is not set: run `source hack/env` in the repository root first", name)
		}
	}
	prefix := os.Getenv("MSB_PREFIX")
	socket, ctdLog = os.Getenv("MSB_CONTAINERD_SOCKET"), os.Getenv("MSB_CONTAINERD_LOG")
	ctdRoot, ctdState = os.Getenv("MSB_CONTAINERD_ROOT"), os.Getenv("MSB_CONTAINERD_STATE")
	var err error
	runtimeName = envOr("MSB_E2E_RUNTIME", msbRT)
	namespace = envOr("MSB_E2E_NAMESPACE", "msb-e2e")
	if ctrTimeout, err = time.ParseDuration(envOr("MSB_E2E_CTR_TIMEOUT", "120s")); err != nil {
		return fmt.Errorf("MSB_E2E_CTR_TIMEOUT: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("the end-to-end tests need root (containerd, mounts, /proc of other processes)")
	}
	ctrBin = filepath.Join(prefix, "bin", "ctr")
	if _, err := os.Stat(ctrBin); err != nil {
		return fmt.Errorf("no %s: run hack/setup", ctrBin)
	}
	if shim, err := exec.LookPath(shimName()); err != nil {
		return fmt.Errorf("runtime %s needs %s in PATH (hack/install builds it; `source hack/env` puts $MSB_PREFIX/bin first): %v", runtimeName, shimName(), err)
	} else if runtimeName == msbRT && !strings.HasPrefix(shim, prefix+"/") {
		fmt.Fprintf(os.Stderr, "e2e: warning: using %s, not the one under %s\n", shim, prefix)
	}
	if repoRoot, err = filepath.Abs("../.."); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "hack/containerd-test")); err != nil {
		return fmt.Errorf("no hack/containerd-test under %s: run the tests from the repository (go test ./test/...)", repoRoot)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// startContainerd starts the private containerd unless it is running; it
// reports whether it started it.
func startContainerd() (bool, error) {
	script := filepath.Join(repoRoot, "hack/containerd-test")
	if exec.Command(script, "status").Run() == nil {
		return false, nil
	}
	if out, err := exec.Command(script, "start").CombinedOutput(); err != nil {
		return false, fmt.Errorf("hack/containerd-test start: %v\n%s", err, out)
	}
	return true, nil
}

// importImages builds the test images (cached) and imports them into our
// namespace; both are quick when nothing changed.
func importImages() error {
	cmd := exec.Command(filepath.Join(repoRoot, "hack/images"), "--import", "busybox", "debian-ml")
	cmd.Env = append(os.Environ(), "MSB_IMAGES_NAMESPACE="+namespace)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/images --import: %v\n%s", err, out)
	}
	return nil
}

// shimName is the binary containerd runs for runtimeName
// (io.containerd.msb.v1 -> containerd-shim-msb-v1).
func shimName() string {
	return "containerd-shim-" + strings.ReplaceAll(strings.TrimPrefix(runtimeName, "io.containerd."), ".", "-")
}

func isMSB() bool { return runtimeName == msbRT }

func skipUnlessMSB(t *testing.T, why string) {
	t.Helper()
	if !isMSB() {
		t.Skipf("msb only (runtime is %s): %s", runtimeName, why)
	}
}

// ---- running ctr -------------------------------------------------------------

type result struct {
	args           []string
	Stdout, Stderr string
	Code           int   // exit status; -1 when ctr did not exit by itself
	Err            error // set when Code is -1
}

func (r result) String() string {
	s := fmt.Sprintf("%s: exit %d", strings.Join(r.args, " "), r.Code)
	if r.Err != nil {
		s += fmt.Sprintf(" (%v)", r.Err)
	}
	return s + fmt.Sprintf("\n--- stdout:\n%s--- stderr:\n%s", r.Stdout, r.Stderr)
}

func (r result) notFound() bool { return strings.Contains(r.Stderr, "not found") }

// ctr's cgroup v1 deprecation warning, on stderr of every call on this host.
var noise = regexp.MustCompile(`(?m)^.*DEPRECATION: The support for cgroup v1 is deprecated.*\n?`)

func ctrCommand(ctx context.Context, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, ctrBin, append([]string{"--address", socket, "--namespace", namespace}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func finish(ctx context.Context, args []string, err error, stdout, stderr string) result {
	r := result{args: args, Stdout: stdout, Stderr: noise.ReplaceAllString(stderr, ""), Code: -1}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.Err = fmt.Errorf("no exit after %v: %w", ctrTimeout, ctx.Err())
	case err == nil:
		r.Code = 0
	case errors.As(err, &ee) && ee.Exited():
		r.Code = ee.ExitCode()
	default:
		r.Err = err
	}
	return r
}

// ctr runs ctr (stdin empty) and returns what it printed and its exit status.
func ctr(t *testing.T, args ...string) result {
	t.Helper()
	return runTool(ctrCommand, args)
}

// runTool runs the command mk makes (stdin empty) within ctrTimeout.
func runTool(mk func(context.Context, []string) *exec.Cmd, args []string) result {
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := mk(ctx, args)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return finish(ctx, args, cmd.Run(), stdout.String(), stderr.String())
}

// mustCtr runs ctr and fails the test unless it exits 0; it returns stdout.
func mustCtr(t *testing.T, args ...string) string {
	t.Helper()
	r := ctr(t, args...)
	if r.Code != 0 {
		t.Fatalf("%v", r)
	}
	return r.Stdout
}

// runArgs is `ctr run` with the runtime under test and the erofs snapshotter.
func runArgs(flags []string, image, id string, cmd ...string) []string {
	a := append([]string{"run", "--runtime", runtimeName, "--snapshotter", "erofs"}, flags...)
	return append(append(a, image, id), cmd...)
}

// runCtr is `ctr run --rm FLAGS IMAGE ID CMD...`.
func runCtr(t *testing.T, flags []string, image, id string, cmd ...string) result {
	t.Helper()
	return ctr(t, runArgs(append([]string{"--rm"}, flags...), image, id, cmd...)...)
}

// ctrTTY runs ctr with a new pseudo-terminal as its controlling terminal and
// stdio, the way a user runs `ctr run -t` in a terminal. The output (in
// Stdout) has the terminal's \r removed.
func ctrTTY(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	return runTTY(t, ctx, ctrCommand(ctx, args), args)
}

// runTTY runs cmd on a new pseudo-terminal and returns what it printed there.
func runTTY(t *testing.T, ctx context.Context, cmd *exec.Cmd, args []string) result {
	t.Helper()
	ptmx, pts, err := openPTY()
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	defer ptmx.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Start()
	pts.Close() // ctr holds the only other handle: reads end with EIO when it is gone
	if err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, ptmx); close(copied) }()
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(5 * time.Second): // a process in the container kept the terminal
	}
	ptmx.Close()
	<-copied
	// One stream: ctr's own messages (on stderr) mix with the container's output.
	return finish(ctx, args, err, noise.ReplaceAllString(strings.ReplaceAll(out.String(), "\r", ""), ""), "")
}

func openPTY() (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	ioctl := func(req uintptr, arg unsafe.Pointer) error {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), req, uintptr(arg)); e != 0 {
			return e
		}
		return nil
	}
	var unlock int32
	var n uint32
	ws := struct{ rows, cols, x, y uint16 }{24, 80, 0, 0}
	if err = ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err == nil {
		if err = ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n)); err == nil {
			err = ioctl(syscall.TIOCSWINSZ, unsafe.Pointer(&ws))
		}
	}
	if err == nil {
		pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, pts, nil
}

// bgCtr is a ctr command running in the background (a foreground `ctr run`
// that the test signals while it runs).
type bgCtr struct {
	args           []string
	ctx            context.Context
	cancel         context.CancelFunc
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error
}

func startCtr(t *testing.T, args ...string) *bgCtr { t.Helper(); return startCtrIn(t, nil, args...) }

func startCtrIn(t *testing.T, stdin io.Reader, args ...string) *bgCtr {
	t.Helper()
	b := &bgCtr{args: args, done: make(chan struct{})}
	b.ctx, b.cancel = context.WithTimeout(context.Background(), 2*ctrTimeout)
	b.cmd = ctrCommand(b.ctx, args)
	b.cmd.Stdin, b.cmd.Stdout, b.cmd.Stderr = stdin, &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		b.cancel()
		t.Fatalf("start ctr: %v", err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { b.cancel(); <-b.done })
	return b
}

// waitOutput waits until the command has printed s on stdout; it fails the
// test if the command exits or the wait times out first.
func (b *bgCtr) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(ctrTimeout)
	for !strings.Contains(b.stdout.String(), s) {
		select {
		case <-b.done:
			t.Fatalf("ctr exited before printing %q: %v", s, b.wait())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctr did not print %q in %v; stdout so far %q, stderr %q", s, ctrTimeout, b.stdout.String(), b.stderr.String())
		}
	}
}

func (b *bgCtr) wait() result {
	select {
	case <-b.done:
	case <-time.After(ctrTimeout):
		b.cancel()
		<-b.done
	}
	return finish(b.ctx, b.args, b.err, b.stdout.String(), b.stderr.String())
}

// ctrEcho runs ctr for a command that echoes its stdin (cat): it sends each
// line and waits for its echo, then closes stdin and returns the result.
// Closing stdin only once the process runs avoids a race in ctr: EOF that
// comes before the task exists never reaches the process (ctr run and ctr
// task exec then hang).
func ctrEcho(t *testing.T, lines []string, args ...string) result {
	t.Helper()
	pr, pw := io.Pipe()
	b := startCtrIn(t, pr, args...)
	echoed := ""
	for _, l := range lines {
		if _, err := io.WriteString(pw, l+"\n"); err != nil {
			t.Fatalf("write to ctr's stdin: %v (%v)", err, b.wait())
		}
		echoed += l + "\n"
		b.waitOutput(t, echoed)
	}
	pw.Close()
	return b.wait()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// ---- containers ----------------------------------------------------------------

var idSeq atomic.Int64

// newID returns a container id unique to this run and removes that container
// (task and all) when the test ends. On failure it logs containerd's log
// lines about the container.
func newID(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	name = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(name, "-")
	id := fmt.Sprintf("e2e-%s-%s-%d", strings.Trim(name, "-"), runToken, idSeq.Add(1))
	t.Cleanup(func() {
		if err := removeContainer(id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if t.Failed() {
			logContainerd(t, id)
		}
	})
	return id
}

// removeContainer kills and deletes the task, then deletes the container
// and its snapshot. What is already gone is fine.
func removeContainer(id string) error {
	var errs []error
	for _, args := range [][]string{{"task", "delete", "--force", id}, {"container", "delete", id}} {
		ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
		var stdout, stderr bytes.Buffer
		cmd := ctrCommand(ctx, args)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		r := finish(ctx, args, cmd.Run(), stdout.String(), stderr.String())
		cancel()
		if r.Code != 0 && !r.notFound() {
			errs = append(errs, errors.New(r.String()))
		}
	}
	return errors.Join(errs...)
}

// ourContainers lists this suite's containers (ids e2e-*) in the namespace.
func ourContainers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	out, _ := ctrCommand(ctx, []string{"container", "list", "--quiet"}).Output()
	var ids []string
	for _, id := range strings.Fields(string(out)) {
		if strings.HasPrefix(id, "e2e-") {
			ids = append(ids, id)
		}
	}
	return ids
}

// runDetached starts `ctr run -d` and waits until the task is RUNNING.
func runDetached(t *testing.T, image, id string, cmd ...string) {
	t.Helper()
	mustCtr(t, runArgs([]string{"-d"}, image, id, cmd...)...)
	waitStatus(t, id, "RUNNING")
}

// task is one line of `ctr task ls`.
type task struct{ PID, Status string }

func tasks(t *testing.T) map[string]task {
	t.Helper()
	m := map[string]task{}
	for _, line := range strings.Split(mustCtr(t, "task", "list"), "\n")[1:] {
		if f := strings.Fields(line); len(f) == 3 {
			m[f[0]] = task{PID: f[1], Status: f[2]}
		}
	}
	return m
}

// waitStatus waits until `ctr task ls` shows the task in status want.
func waitStatus(t *testing.T, id, want string) task {
	t.Helper()
	deadline := time.Now().Add(ctrTimeout)
	for {
		tk, ok := tasks(t)[id]
		if ok && tk.Status == want {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: status %q (listed: %v), want %s after %v", id, tk.Status, ok, want, ctrTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventually polls f until it returns nil or the ctr timeout passes; it
// returns the last error.
func eventually(f func() error) error {
	deadline := time.Now().Add(ctrTimeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// logContainerd logs the last lines of containerd's log that mention id.
func logContainerd(t *testing.T, id string) {
	t.Helper()
	data, err := os.ReadFile(ctdLog)
	if err != nil {
		t.Logf("containerd log: %v", err)
		return
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, id) {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("%s lines mentioning %s:\n%s", ctdLog, id, strings.Join(lines, "\n"))
}

// ---- host state: mounts, loop devices, processes, task dirs -----------------------

type proc struct {
	pid, ppid int
	exe       string // base name of /proc/PID/exe
	cmdline   string // argv joined with spaces, with a trailing space
}

func procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var ps []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue // kernel thread, zombie or gone
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		cmd, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || err2 != nil {
			continue
		}
		// stat: "pid (comm) state ppid ..."; comm may hold spaces and parens
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ps = append(ps, proc{
			pid: pid, ppid: ppid,
			exe:     filepath.Base(strings.TrimSuffix(exe, " (deleted)")),
			cmdline: strings.ReplaceAll(string(cmd), "\x00", " "),
		})
	}
	return ps
}

// isOurShim: the runtime's shim serving our namespace (id "" = any container).
func isOurShim(p proc, id string) bool {
	return p.exe == shimName() && strings.Contains(p.cmdline, " -namespace "+namespace+" ") &&
		(id == "" || strings.Contains(p.cmdline, " -id "+id+" "))
}

// shimPID returns the pid of the shim that serves container id.
func shimPID(t *testing.T, id string) int {
	t.Helper()
	for _, p := range procs() {
		if isOurShim(p, id) {
			return p.pid
		}
	}
	t.Fatalf("no %s process with -namespace %s -id %s", shimName(), namespace, id)
	return 0
}

// vmms returns the VMM processes that belong to this suite: descendants of
// our shims, VMMs a shim adopted from the warm pool (it holds their
// pidfds), or orphans whose command line names containerd's root or state
// (their disks and sockets live there).
func vmms(ps []proc, underShim int) []proc {
	byPID := map[int]proc{}
	for _, p := range ps {
		byPID[p.pid] = p
	}
	descends := func(p proc, shim int) bool {
		for i := 0; i < 64 && p.ppid > 1; i++ {
			parent, ok := byPID[p.ppid]
			if !ok {
				return false
			}
			if (shim == 0 && isOurShim(parent, "")) || parent.pid == shim {
				return true
			}
			p = parent
		}
		return false
	}
	held := heldPids(ps, underShim)
	var out []proc
	for _, p := range ps {
		if !slices.Contains(vmmNames, p.exe) {
			continue
		}
		if descends(p, underShim) || held[p.pid] || (underShim == 0 &&
			(strings.Contains(p.cmdline, ctdRoot+"/") || strings.Contains(p.cmdline, ctdState+"/"))) {
			out = append(out, p)
		}
	}
	return out
}

// hostState is what a container may leave behind on the host; every field
// holds one string per thing.
type hostState struct {
	Mounts    []string // mount points under containerd's root or state, or msb's /run/msb
	MSBDirs   []string // VM run and share directories under /run/msb
	Sockets   []string // shim sockets (msb only: a killed runc shim leaves its socket)
	Loops     []string // `losetup -a` lines whose backing file is under them
	Shims     []string // our runtime's shims for our namespace
	VMMs      []string
	TaskDirs  []string // io.containerd.runtime.v2.task/<ns>/* under root and state
	Snapshots []string // erofs snapshots (active ones are per container)
}

func captureHostState(t *testing.T) hostState {
	t.Helper()
	var s hostState
	under := func(p string) bool {
		return strings.HasPrefix(p, ctdRoot+"/") || strings.HasPrefix(p, ctdState+"/") || strings.HasPrefix(p, "/run/msb/")
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && under(f[4]) {
			s.Mounts = append(s.Mounts, f[4])
		}
	}
	out, err := exec.Command("losetup", "-a").Output()
	if err != nil {
		t.Fatalf("losetup -a: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, ctdRoot+"/") || strings.Contains(line, ctdState+"/") {
			s.Loops = append(s.Loops, line)
		}
	}
	ps := procs()
	for _, p := range ps {
		if isOurShim(p, "") {
			s.Shims = append(s.Shims, fmt.Sprintf("%d %s", p.pid, p.cmdline))
		}
	}
	for _, p := range vmms(ps, 0) {
		s.VMMs = append(s.VMMs, fmt.Sprintf("%d %s", p.pid, p.cmdline))
	}
	claimedVMMs, claimedDirs := claimedFromPool(ps)
	s.VMMs = append(s.VMMs, claimedVMMs...)
	s.MSBDirs = append(s.MSBDirs, claimedDirs...)
	if isMSB() {
		ents, _ := os.ReadDir(envOr("MSB_CONTAINERD_SOCKET_DIR", "/run/msb-test/s"))
		for _, e := range ents {
			s.Sockets = append(s.Sockets, e.Name())
		}
	}
	for _, d := range []string{"/run/msb/vm", "/run/msb/share", "/run/msb/pods", "/run/msb/ro", "/run/msb/host"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			s.MSBDirs = append(s.MSBDirs, filepath.Join(d, e.Name()))
		}
	}
	for _, dir := range []string{ctdRoot, ctdState} {
		d := filepath.Join(dir, "io.containerd.runtime.v2.task", namespace)
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			s.TaskDirs = append(s.TaskDirs, filepath.Join(d, e.Name()))
		}
	}
	for _, line := range strings.Split(mustCtr(t, "snapshots", "--snapshotter", "erofs", "list"), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			s.Snapshots = append(s.Snapshots, f[0])
		}
	}
	return s
}

// newSince lists, per kind, what is in s but was not in before.
func (s hostState) newSince(before hostState) []string {
	var leaks []string
	diff := func(kind string, was, is []string) {
		for _, x := range is {
			if !slices.Contains(was, x) {
				leaks = append(leaks, kind+": "+x)
			}
		}
	}
	diff("mount", before.Mounts, s.Mounts)
	diff("loop device", before.Loops, s.Loops)
	diff("shim", before.Shims, s.Shims)
	diff("VMM", before.VMMs, s.VMMs)
	diff("task dir", before.TaskDirs, s.TaskDirs)
	diff("msb dir", before.MSBDirs, s.MSBDirs)
	diff("shim socket", before.Sockets, s.Sockets)
	diff("snapshot", before.Snapshots, s.Snapshots)
	return leaks
}

// checkNoLeaks fails the test if, once things settle (shims exit
// asynchronously), the host holds anything that was not there in before.
func checkNoLeaks(t *testing.T, before hostState) {
	t.Helper()
	var leaks []string
	_ = eventually(func() error {
		leaks = captureHostState(t).newSince(before)
		if len(leaks) > 0 {
			return errors.New("leaks")
		}
		return nil
	})
	if len(leaks) > 0 {
		t.Errorf("left on the host:\n  %s", strings.Join(leaks, "\n  "))
	}
}
