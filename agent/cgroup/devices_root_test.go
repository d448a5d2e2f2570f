package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestRootDeviceController attaches the filter of ctr's rules to a real
// group and opens device nodes from a process in it: the kernel must
// refuse what runc's controller refuses, with EPERM.
func TestRootDeviceController(t *testing.T) {
	parent := filepath.Join(v2Root(t), fmt.Sprintf("msb-test-%d", os.Getpid()))
	defer os.Remove(parent)
	nodes := makeNodes(t, map[string][3]uint32{
		"null": {unix.S_IFCHR, 1, 3}, "kmsg": {unix.S_IFCHR, 1, 11},
		"disk": {unix.S_IFBLK, 7, 0}, "hvc": {unix.S_IFCHR, 229, 0},
	})
	for _, tc := range []struct {
		name    string
		rules   []specs.LinuxDeviceCgroup
		allowed map[string]bool
	}{
		{"ctr default", ctrDefault, map[string]bool{"null": true}},
		{"privileged", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
			map[string]bool{"null": true, "kmsg": true, "disk": true, "hvc": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Create(parent, "dev")
			if err != nil {
				t.Fatal(err)
			}
			defer g.Remove(time.Second)
			rules, err := DeviceRules(tc.rules, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.SetDevices(rules); err != nil {
				t.Fatal(err)
			}
			for name, path := range nodes {
				out, err := inGroup(t, g, `: < "$1" && : > "$1"`, path)
				refused := strings.Contains(out, "Operation not permitted")
				switch {
				// the host may have no such device: ENXIO, not EPERM
				case tc.allowed[name] && (refused || name == "null" && err != nil):
					t.Errorf("%s: open failed in the group: %v %s", name, err, out)
				case !tc.allowed[name] && (err == nil || !refused):
					t.Errorf("%s: open not refused with EPERM: %v %s", name, err, out)
				}
			}
			// mknod stays allowed: runc's "c *:* m" and "b *:* m".
			dir := t.TempDir()
			if out, err := inGroup(t, g, `mknod "$1/b" b 7 0 && mknod "$1/c" c 229 0`, dir); err != nil {
				t.Errorf("mknod in the group: %v %s", err, out)
			}
		})
	}
}

// makeNodes makes device nodes in a temporary directory; an open of its
// null node must work, or the directory is on a nodev mount.
func makeNodes(t *testing.T, specs map[string][3]uint32) map[string]string {
	dir := t.TempDir()
	paths := map[string]string{}
	for name, s := range specs {
		p := filepath.Join(dir, name)
		if err := unix.Mknod(p, s[0]|0o666, int(unix.Mkdev(s[1], s[2]))); err != nil {
			t.Skipf("mknod: %v", err)
		}
		paths[name] = p
	}
	f, err := os.Open(paths["null"])
	if err != nil {
		t.Skipf("device nodes unusable in %s: %v", dir, err)
	}
	f.Close()
	return paths
}

// inGroup runs script under sh in the group, with arg as $1.
func inGroup(t *testing.T, g *Group, script, arg string) (string, error) {
	t.Helper()
	f, err := g.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sh", "-c", script, "sh", arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
