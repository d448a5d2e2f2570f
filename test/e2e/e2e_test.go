//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExitCode(t *testing.T) {
	r := runCtr(t, nil, busybox, newID(t), "sh", "-c", "echo hi; exit 3")
	if r.Code != 3 || r.Stdout != "hi\n" {
		t.Fatalf("want stdout \"hi\\n\" and exit 3, got %v", r)
	}
}

func TestStdoutStderr(t *testing.T) {
	r := runCtr(t, nil, busybox, newID(t), "sh", "-c", "echo to-out; echo to-err >&2; echo out2")
	if r.Code != 0 || r.Stdout != "to-out\nout2\n" || strings.TrimSpace(r.Stderr) != "to-err" {
		t.Fatalf("want stdout \"to-out\\nout2\\n\", stderr \"to-err\\n\", exit 0; got %v", r)
	}
}

func TestStdin(t *testing.T) {
	// ctr run has no -i: without -t it always passes its stdin on.
	r := ctrEcho(t, []string{"x", "line two"}, runArgs([]string{"--rm"}, busybox, newID(t), "cat")...)
	if r.Code != 0 || r.Stdout != "x\nline two\n" {
		t.Fatalf("cat should echo its stdin and exit 0 at EOF; got %v", r)
	}
}

func TestTTY(t *testing.T) {
	r := ctrTTY(t, runArgs([]string{"--rm", "-t"}, busybox, newID(t),
		"sh", "-c", "test -t 0 && test -t 1 && echo IS-A-TTY; tty; exit 4")...)
	t.Logf("terminal output: %q", r.Stdout)
	if r.Code != 4 || !strings.Contains(r.Stdout, "IS-A-TTY\n") || !regexp.MustCompile(`(?m)^/dev/pts/\d+$`).MatchString(r.Stdout) {
		t.Fatalf("want IS-A-TTY, a /dev/pts/N line and exit 4; got %v", r)
	}
}

func TestEnvCwdUser(t *testing.T) {
	r := runCtr(t, []string{"--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000"}, busybox, newID(t),
		"sh", "-c", `echo "FOO=$FOO"; echo "cwd=$(pwd)"; echo "uid=$(id -u)"`)
	if want := "FOO=bar\ncwd=/tmp\nuid=1000\n"; r.Code != 0 || r.Stdout != want {
		t.Fatalf("want %q, got %v", want, r)
	}
}

func TestExec(t *testing.T) {
	id := newID(t)
	runDetached(t, busybox, id, "sleep", "300")

	r := ctr(t, "task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo ok; echo err >&2; exit 5")
	if r.Code != 5 || r.Stdout != "ok\n" || strings.TrimSpace(r.Stderr) != "err" {
		t.Fatalf("exec: want stdout ok, stderr err, exit 5; got %v", r)
	}
	r = ctrEcho(t, []string{"from stdin"}, "task", "exec", "--exec-id", "e2", id, "cat")
	if r.Code != 0 || r.Stdout != "from stdin\n" {
		t.Fatalf("exec with stdin: got %v", r)
	}
	r = ctr(t, "task", "exec", "--exec-id", "e3", "--user", "1000", "--cwd", "/home/user", id, "sh", "-c", "id -u; pwd")
	if r.Code != 0 || r.Stdout != "1000\n/home/user\n" {
		t.Fatalf("exec --user 1000 --cwd /home/user: got %v", r)
	}
	r = ctrTTY(t, "task", "exec", "-t", "--exec-id", "e4", id, "sh", "-c", "test -t 0 && test -t 1 && echo IS-A-TTY; exit 6")
	if r.Code != 6 || !strings.Contains(r.Stdout, "IS-A-TTY\n") {
		t.Fatalf("exec -t: want IS-A-TTY and exit 6; got %v", r)
	}
	// The container is still there after its execs.
	if r := ctr(t, "task", "exec", "--exec-id", "e5", id, "true"); r.Code != 0 {
		t.Fatalf("exec after execs: %v", r)
	}
	waitStatus(t, id, "RUNNING")
}

func TestKill(t *testing.T) {
	t.Run("TERM", func(t *testing.T) {
		id := newID(t)
		// PID 1 ignores TERM unless it handles it, so the trap decides.
		run := startCtr(t, runArgs([]string{"--rm"}, busybox, id,
			"sh", "-c", `trap "exit 42" TERM; echo ready; while :; do sleep 1; done`)...)
		run.waitOutput(t, "ready")
		mustCtr(t, "task", "kill", id) // SIGTERM is ctr's default
		if r := run.wait(); r.Code != 42 {
			t.Fatalf("want the TERM trap's exit status 42 from ctr run, got %v", r)
		}
	})
	t.Run("KILL", func(t *testing.T) {
		id := newID(t)
		runDetached(t, busybox, id, "sh", "-c", `trap "" TERM; sleep 300`)
		mustCtr(t, "task", "kill", "--signal", "KILL", id)
		waitStatus(t, id, "STOPPED")
		r := ctr(t, "task", "delete", id)
		if r.Code != 0 || !strings.Contains(r.Stderr, "exit code 137") {
			t.Fatalf("want task delete to report exit code 137, got %v", r)
		}
	})
}

func TestTaskPs(t *testing.T) {
	id := newID(t)
	runDetached(t, busybox, id, "sh", "-c", "sleep 300 & exec sleep 301")
	tk := waitStatus(t, id, "RUNNING")
	// Two processes; the background sleep may take a moment to start.
	var pids []string
	err := eventually(func() error {
		pids = nil
		for _, line := range strings.Split(mustCtr(t, "task", "ps", id), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				if _, err := strconv.Atoi(f[0]); err == nil {
					pids = append(pids, f[0])
				}
			}
		}
		if len(pids) < 2 {
			return fmt.Errorf("task ps lists pids %v, want 2", pids)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// With runc the task's pid (task ls) is the container's init on the host
	// and ps lists host pids. A VM runtime reports a host pid (msb: the VMM's)
	// in task ls but lists the guest's pids, as Kata does.
	if !isMSB() && !strings.Contains(" "+strings.Join(pids, " ")+" ", " "+tk.PID+" ") {
		t.Errorf("task ps lists pids %v, not the task's pid %s from task ls", pids, tk.PID)
	}
}

// TestPIDNamespace: a container has its own PID namespace (ctr's default
// spec asks for one), whose PID 1 is the container's process; execs join it.
func TestPIDNamespace(t *testing.T) {
	id := newID(t)
	runDetached(t, busybox, id, "sleep", "300")
	r := ctr(t, "task", "exec", "--exec-id", "p1", id, "sh", "-c", `tr '\0' ' ' </proc/1/cmdline; echo; echo "me=$$"`)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "sleep 300 \n") || strings.Contains(r.Stdout, "me=1\n") {
		t.Fatalf("want PID 1 to be the container's sleep and the exec not PID 1; got %v", r)
	}
	// Only the container's processes are visible: its sleep, the exec's sh
	// and what sh runs.
	r = ctr(t, "task", "exec", "--exec-id", "p2", id, "sh", "-c", `ls -d /proc/[0-9]* | wc -l`)
	if n, err := strconv.Atoi(strings.TrimSpace(r.Stdout)); r.Code != 0 || err != nil || n > 4 {
		t.Fatalf("want at most 4 processes in the container's PID namespace; got %v", r)
	}
}

// TestUserNamespace: `ctr run --uidmap/--gidmap` with the snapshotter's id
// remapping (--remap-labels): the container and its execs share one user
// namespace with the mapping, run as its root, and see the image's files
// as root's.
func TestUserNamespace(t *testing.T) {
	id := newID(t)
	m := "0:100000:65536"
	mustCtr(t, runArgs([]string{"-d", "--remap-labels", "--uidmap", m, "--gidmap", m}, busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
	script := `cat /proc/self/uid_map; id -u; stat -c %u:%g /bin/busybox /etc;
[ "$(readlink /proc/self/ns/user)" = "$(readlink /proc/1/ns/user)" ] && echo same-userns`
	r := ctr(t, "task", "exec", "--exec-id", "u1", id, "sh", "-c", script)
	want := []string{"0", "100000", "65536", "0", "0:0", "0:0", "same-userns"}
	if got := strings.Fields(r.Stdout); r.Code != 0 || !slices.Equal(got, want) {
		t.Fatalf("exec in the user namespace: got %q, want %q\n%v", got, want, r)
	}
	if !isMSB() {
		// runc's root on the EROFS snapshotter's ext4 upper has its top
		// directory owned by the unmapped host root: not writable there.
		return
	}
	r = ctr(t, "task", "exec", "--exec-id", "u2", id, "sh", "-c", "touch /made && stat -c %u:%g /made")
	if r.Code != 0 || r.Stdout != "0:0\n" {
		t.Fatalf("the namespace's root writes to its root: %v", r)
	}
}

// TestNestedUserNamespace: a container may make a user namespace of its
// own (rootless tools, sandboxes), which the kernel refuses to a process
// that is chrooted rather than pivoted into its root.
func TestNestedUserNamespace(t *testing.T) {
	r := runCtr(t, nil, busybox, newID(t), "sh", "-c", "unshare -U true && echo nested-ok")
	if r.Code != 0 || r.Stdout != "nested-ok\n" {
		t.Fatalf("unshare -U in the container: %v", r)
	}
}

func TestTaskMetrics(t *testing.T) {
	id := newID(t)
	runDetached(t, busybox, id, "sleep", "300")
	out := mustCtr(t, "task", "metrics", id)
	for _, re := range []string{`(?mi)^memory\S*\s+\d+`, `(?mi)^pids\S*\s+\d+`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("task metrics has no line matching %s:\n%s", re, out)
		}
	}
}

func TestPauseResume(t *testing.T) {
	id := newID(t)
	runDetached(t, busybox, id, "sleep", "300")
	mustCtr(t, "task", "pause", id)
	t.Cleanup(func() { ctr(t, "task", "resume", id) }) // a paused task ignores the cleanup's KILL
	waitStatus(t, id, "PAUSED")
	mustCtr(t, "task", "resume", id)
	waitStatus(t, id, "RUNNING")
	if r := ctr(t, "task", "exec", "--exec-id", "after-resume", id, "echo", "alive"); r.Code != 0 || r.Stdout != "alive\n" {
		t.Fatalf("exec after resume: %v", r)
	}
}

func TestLayers(t *testing.T) {
	// msb-check-layers checks L2's new and replaced files, its whiteout and
	// opaque directory, and L3's hard link, symlink and 8 MiB content.
	r := runCtr(t, nil, debianML, newID(t), "/usr/local/bin/msb-check-layers")
	if r.Code != 0 || r.Stdout != "OK\n" {
		t.Fatalf("msb-check-layers: %v", r)
	}
}

func TestWritesIsolated(t *testing.T) {
	a, b := newID(t), newID(t)
	runDetached(t, busybox, a, "sleep", "300")
	r := ctr(t, "task", "exec", "--exec-id", "w", a, "sh", "-c", "echo from-a >/x && echo from-a >/etc/motd && cat /x")
	if r.Code != 0 || r.Stdout != "from-a\n" {
		t.Fatalf("write in A: %v", r)
	}
	r = runCtr(t, nil, busybox, b, "sh", "-c", "cat /x /etc/motd 2>&1; true")
	if r.Code != 0 || strings.Contains(r.Stdout, "from-a") || !strings.Contains(r.Stdout, "No such file") {
		t.Fatalf("B, from the same image while A runs, must not see A's /x or /etc/motd; got %v", r)
	}
	// And A still sees its own write.
	if r := ctr(t, "task", "exec", "--exec-id", "r", a, "cat", "/x"); r.Code != 0 || r.Stdout != "from-a\n" {
		t.Fatalf("read back in A: %v", r)
	}
}

func TestReadOnlyRootfs(t *testing.T) {
	r := runCtr(t, []string{"--read-only"}, busybox, newID(t), "touch", "/x")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
		t.Fatalf("touch /x on a --read-only rootfs: want a failure with \"Read-only file system\", got %v", r)
	}
	r = runCtr(t, []string{"--read-only"}, busybox, newID(t), "cat", "/etc/passwd")
	if r.Code != 0 || !strings.Contains(r.Stdout, "root:x:0:0") {
		t.Fatalf("reading a --read-only rootfs: %v", r)
	}
}

func TestBindMount(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCtr(t, []string{"--mount", "type=bind,src=" + dir + ",dst=/mnt,options=rbind:rw"}, busybox, newID(t),
		"sh", "-c", "cat /mnt/in.txt && echo from the container >/mnt/out.txt")
	if r.Code != 0 || r.Stdout != "from the host\n" {
		t.Fatalf("read a host file through the bind mount: %v", r)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out.txt"))
	if err != nil || string(got) != "from the container\n" {
		t.Fatalf("file written in the container, on the host: %q, %v", got, err)
	}
}

// TestBindSubmounts: a host directory with a mount below it, bound into a
// container. Read-only without "rro" leaves that submount writable (runc's
// non-recursive read-only bind); with "rslave", a mount the host makes
// below the directory after the container started shows in it.
func TestBindSubmounts(t *testing.T) {
	dir := t.TempDir()
	// A shared mount of its own, so that later mounts below it propagate.
	mustMount(t, dir, dir, "", unix.MS_BIND)
	mustMount(t, "", dir, "", unix.MS_SHARED|unix.MS_REC)
	sub := filepath.Join(dir, "tmpfs")
	os.Mkdir(sub, 0o755)
	mustMount(t, "tmpfs", sub, "tmpfs", 0)

	r := runCtr(t, []string{"--mount", "type=bind,src=" + dir + ",dst=/mnt,options=rbind:ro"}, busybox, newID(t),
		"sh", "-c", "touch /mnt/tmpfs/made && echo sub-rw; touch /mnt/top 2>/dev/null || echo top-ro")
	if r.Code != 0 || r.Stdout != "sub-rw\ntop-ro\n" {
		t.Fatalf("non-recursive read-only bind: want the submount writable and the top read-only, got %v", r)
	}
	if _, err := os.Stat(filepath.Join(sub, "made")); err != nil {
		t.Fatalf("the write to the submount is not on the host: %v", err)
	}

	later := filepath.Join(dir, "later")
	os.Mkdir(later, 0o755)
	id2 := newID(t)
	mustCtr(t, runArgs([]string{"-d", "--mount", "type=bind,src=" + dir + ",dst=/mnt,options=rbind:rw:rslave"}, busybox, id2, "sleep", "300")...)
	waitStatus(t, id2, "RUNNING")
	mustMount(t, "tmpfs", later, "tmpfs", 0)
	if err := os.WriteFile(filepath.Join(later, "flag"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := eventually(func() error {
		if r := ctr(t, "task", "exec", "--exec-id", "ls", id2, "ls", "/mnt/later"); r.Stdout != "flag\n" {
			return fmt.Errorf("ls /mnt/later: %v", r)
		}
		return nil
	}); err != nil {
		t.Fatalf("rslave: the host's later mount does not reach the container: %v", err)
	}
}

// mustMount mounts for the test and unmounts (detached) when it ends.
func mustMount(t *testing.T, source, target, fstype string, flags uintptr) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	if flags&(unix.MS_SHARED|unix.MS_PRIVATE|unix.MS_SLAVE) == 0 {
		t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	}
}

func TestConcurrentContainers(t *testing.T) {
	const n = 5
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID(t)
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { results[i] = ctr(t, runArgs([]string{"-d"}, busybox, id, "sleep", "300")...) })
	}
	wg.Wait()
	for _, r := range results {
		if r.Code != 0 {
			t.Fatalf("run -d: %v", r)
		}
	}
	for _, id := range ids {
		waitStatus(t, id, "RUNNING")
	}
	for i, id := range ids {
		wg.Go(func() {
			results[i] = ctr(t, "task", "exec", "--exec-id", "hello", id, "sh", "-c", "echo $0", id)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 || r.Stdout != ids[i]+"\n" {
			t.Errorf("exec in %s: %v", ids[i], r)
		}
	}
	for i, id := range ids {
		wg.Go(func() {
			results[i] = ctr(t, "task", "delete", "--force", id)
			if results[i].Code == 0 {
				results[i] = ctr(t, "container", "delete", id)
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.Code != 0 {
			t.Errorf("delete: %v", r)
		}
	}
	left := ourContainers()
	for _, id := range ids {
		if strings.Contains(" "+strings.Join(left, " ")+" ", " "+id+" ") {
			t.Errorf("container %s still listed after delete", id)
		}
	}
}

func TestNoLeaks(t *testing.T) {
	cycles := 10
	if v := os.Getenv("MSB_E2E_LEAK_CYCLES"); v != "" {
		var err error
		if cycles, err = strconv.Atoi(v); err != nil || cycles < 1 {
			t.Fatalf("MSB_E2E_LEAK_CYCLES=%q: want a positive number", v)
		}
	}
	before := captureHostState(t)
	for i := range cycles {
		// Each cycle: a run --rm, and a detached container taken down step by step.
		if r := runCtr(t, nil, busybox, newID(t), "true"); r.Code != 0 {
			t.Fatalf("cycle %d: run --rm: %v", i, r)
		}
		id := newID(t)
		runDetached(t, busybox, id, "sleep", "300")
		if r := ctr(t, "task", "exec", "--exec-id", "x", id, "true"); r.Code != 0 {
			t.Fatalf("cycle %d: exec: %v", i, r)
		}
		mustCtr(t, "task", "kill", "--signal", "KILL", id)
		waitStatus(t, id, "STOPPED")
		mustCtr(t, "task", "delete", id)
		mustCtr(t, "container", "delete", id)
	}
	checkNoLeaks(t, before)
}

func TestMissingExecutable(t *testing.T) {
	id := newID(t)
	before := captureHostState(t)
	r := runCtr(t, nil, busybox, id, "/nonexistent")
	if r.Code == 0 || !strings.Contains(r.Stderr, "/nonexistent") {
		t.Fatalf("want a failure whose message names /nonexistent, got %v", r)
	}
	if _, ok := tasks(t)[id]; ok {
		t.Errorf("task %s still listed", id)
	}
	if left := ourContainers(); strings.Contains(" "+strings.Join(left, " ")+" ", " "+id+" ") {
		t.Errorf("container %s still listed after the failed run --rm", id)
	}
	checkNoLeaks(t, before)
}

// A mount the runtime cannot honour fails the run with a message that
// names it, and leaves nothing behind.
func TestUnsupportedMount(t *testing.T) {
	id := newID(t)
	before := captureHostState(t)
	r := runCtr(t, []string{"--mount", "type=weirdfs,src=none,dst=/mnt,options=rw"}, busybox, id, "true")
	if r.Code == 0 {
		t.Fatalf("a weirdfs mount was accepted: %v", r)
	}
	if isMSB() && !strings.Contains(r.Stderr, `"weirdfs"`) {
		t.Fatalf("the error should name the mount type: %v", r)
	}
	if _, ok := tasks(t)[id]; ok {
		t.Errorf("task %s still listed", id)
	}
	checkNoLeaks(t, before)
}
