//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The guest kernel is hostile, so what serves a VM on the host runs with
// least privilege (docs/security.md). These tests read /proc as the host
// sees each process.

// procStatus is what /proc/PID/status says of a process's privileges.
type procStatus struct {
	uid              string
	noNewPrivs       bool
	seccomp          bool
	capEff, capBound uint64
}

func readStatus(t *testing.T, pid int) procStatus {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var s procStatus
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			s.uid = strings.Fields(v)[1] // effective
		case "NoNewPrivs":
			s.noNewPrivs = v == "1"
		case "Seccomp":
			s.seccomp = v == "2"
		case "CapEff":
			s.capEff, _ = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			s.capBound, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	return s
}

// Capabilities no process serving a VM may hold.
var forbiddenCaps = map[string]uint{
	"CAP_SYS_ADMIN": 21, "CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19, "CAP_SYS_MODULE": 16,
	"CAP_MKNOD": 27, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SETPCAP": 8,
}

// TestVMMConfined: after boot, QEMU and virtiofsd run with no_new_privs, a
// seccomp filter, no capability a file server or VMM does not need (QEMU
// none at all, as a uid of its own), a root where the host's /root, /etc and
// containerd's state are not, and, with no NIC, a network namespace that
// is not the host's.
func TestVMMConfined(t *testing.T) {
	skipUnlessMSB(t, "runc has no VMM")
	dir := t.TempDir()
	id := newID(t)
	mustCtr(t, runArgs([]string{"-d", "--mount", "type=bind,src=" + dir + ",dst=/data,options=rbind:rw"}, busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
	shim := shimPID(t, id)
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	byName := map[string]int{}
	for _, pid := range vmPIDs(shim) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		name := filepath.Base(exe)
		byName[name] = pid
		t.Run(name, func(t *testing.T) {
			s := readStatus(t, pid)
			if !s.noNewPrivs || !s.seccomp {
				t.Errorf("pid %d: NoNewPrivs %v, seccomp filter %v", pid, s.noNewPrivs, s.seccomp)
			}
			for c, bit := range forbiddenCaps {
				if s.capEff&(1<<bit) != 0 {
					t.Errorf("pid %d has %s (CapEff %x)", pid, c, s.capEff)
				}
			}
			if name == "qemu-system-x86_64" && (s.uid == "0" || s.capEff != 0) {
				t.Errorf("QEMU runs as uid %s with capabilities %x, want a uid of its own and none", s.uid, s.capEff)
			}
			root := fmt.Sprintf("/proc/%d/root", pid)
			for _, p := range []string{"root", "etc/passwd", strings.TrimPrefix(ctdRoot, "/")} {
				if _, err := os.Stat(filepath.Join(root, p)); err == nil {
					t.Errorf("pid %d sees the host's /%s", pid, p)
				}
			}
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns == hostNet {
				t.Errorf("pid %d runs in the host's network namespace", pid)
			}
		})
	}
	if byName["qemu-system-x86_64"] == 0 || byName["virtiofsd"] == 0 {
		t.Fatalf("want QEMU and virtiofsd under the shim, found %v", byName)
	}
	// The file server makes no device node on the host for the guest,
	// whatever the container may do in its own VM (runc's default spec
	// lets it mknod: here it is the host's directory).
	r := ctr(t, "task", "exec", "--exec-id", "mknod", id, "sh", "-c", "mknod /data/mem c 1 1; mknod /data/blk b 8 0; ls /data")
	for _, n := range []string{"mem", "blk"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("the container made a device node %s in the host's %s: %v", n, dir, r)
		}
	}
}
