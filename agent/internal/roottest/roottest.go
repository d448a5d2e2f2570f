// Package roottest holds what the agent's root-only tests share: a busybox
// tree to run processes in, and a cgroup v2 parent for their containers.
package roottest

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// BusyboxRoot makes a directory with dirs, a copy of the host's static
// busybox as bin/busybox and a bin/<applet> link to it for each applet. It
// skips the test when busybox is not installed.
func BusyboxRoot(t *testing.T, dirs []string, applets ...string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox")
	}
	root := t.TempDir()
	for _, d := range append([]string{"bin"}, dirs...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// CgroupParent is a per-process cgroup under this machine's cgroup v2
// hierarchy, removed when the test ends; "" when there is none.
func CgroupParent(t *testing.T) string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			parent := filepath.Join(p, fmt.Sprintf("msb-test-%d", os.Getpid()))
			t.Cleanup(func() { os.Remove(parent) })
			return parent
		}
	}
	return ""
}

// NSEnter builds agent/nsenter's msb-nsenter (as hack/install does for the
// boot disk) once per test binary and returns its path. A process that
// joins a container's mount namespace runs the test binary inside the
// container's root, where a dynamic loader is not: without a static test
// binary (CGO_ENABLED=0, as hack/test builds it) the test is skipped.
func NSEnter(t *testing.T) string {
	t.Helper()
	if f, err := elf.Open("/proc/self/exe"); err == nil {
		dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if dynamic {
			t.Skip("SKIP: the test binary is dynamically linked; run with CGO_ENABLED=0")
		}
	}
	nsenterOnce.Do(func() {
		dir, err := os.MkdirTemp("", "msb-nsenter-")
		if err != nil {
			nsenterErr = err
			return
		}
		nsenterPath = filepath.Join(dir, "msb-nsenter")
		src := filepath.Join(repoRoot(), "agent", "nsenter", "msb-nsenter.c")
		if out, err := exec.Command("gcc", "-static", "-Os", "-Wall", "-Werror", "-o", nsenterPath, src).CombinedOutput(); err != nil {
			nsenterErr = fmt.Errorf("build msb-nsenter: %v\n%s", err, out)
		}
	})
	if nsenterErr != nil {
		t.Fatal(nsenterErr)
	}
	return nsenterPath
}

var (
	nsenterOnce sync.Once
	nsenterPath string
	nsenterErr  error
)

// repoRoot is the module's root, found from this file's directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}
