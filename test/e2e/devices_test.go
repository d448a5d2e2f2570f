//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A container keeps the default CAP_MKNOD, so it can make a node for any
// device; the device controller must still refuse to open the disks and
// consoles, as runc's does. A /tmp node of /dev/null is the control: a node
// the rules allow works there, so a refusal is the controller's.
const tryScript = `try() {
	n=$1; shift
	mknod /tmp/$n "$@" || return
	r=$( (: < /tmp/$n) 2>&1 ) && r=ok
	w=$( (: > /tmp/$n) 2>&1 ) && w=ok
	echo "$n read: $r"
	echo "$n write: $w"
}
`

// TestDeviceCgroup runs a container with ctr's rules (containerd's default
// deny-all and oci.WithDefaultUnixDevices).
func TestDeviceCgroup(t *testing.T) {
	script := tryScript + "try disk b " + testDisk(t) + "\ntry tty1 c 4 1\ntry hvc0 c 229 0\ntry null c 1 3\n"
	r := runCtr(t, nil, busybox, newID(t), "sh", "-c", script)
	checkRefused(t, r, "disk", "tty1", "hvc0")
}

// TestDevicePrivilegedCRI: in one pod, an exec in an unprivileged container
// (CRI's rules) cannot open the disk; in a privileged one (all devices
// allowed) it reads it. msb is checked with the README's configuration
// (privileged_without_host_devices and _all_devices_allowed: CRI sends
// "allow all" only with the second) and with containerd's default, which
// lists every host device in the spec (handler msb-hostdevices): a VM has
// its own devices, so the shim drops the host's it lacks. ctr cannot show
// this on msb: --privileged-without-host-devices keeps ctr's deny-all rules.
func TestDevicePrivilegedCRI(t *testing.T) {
	criImages(t)
	handlers := []string{criHandler()}
	if isMSB() {
		handlers = append(handlers, "msb-hostdevices")
	}
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) { testDevicePrivilegedCRI(t, h) })
	}
}

func testDevicePrivilegedCRI(t *testing.T, handler string) {
	disk := testDisk(t)
	priv := map[string]any{"security_context": map[string]any{"privileged": true}}
	p := runPodWith(t, handler, "e2e-devices-"+handler+"-", map[string]any{"linux": priv})
	plain := p.start(t, "plain", map[string]any{}, "sleep", "100000")
	e := crictl(t, "exec", plain, "sh", "-c", tryScript+"try disk b "+disk+"\ntry null c 1 3\n")
	checkRefused(t, e, "disk")
	all := p.start(t, "priv", priv, "sleep", "100000")
	e = crictl(t, "exec", all, "sh", "-c", tryScript+"try disk b "+disk+"\nhead -c 512 /tmp/disk | wc -c\n")
	lines := strings.Split(e.Stdout, "\n")
	if e.Code != 0 || lineWith(lines, "disk read: ") != "disk read: ok" {
		t.Fatalf("a privileged container must open the disk: %v", e)
	}
	if f := strings.Fields(e.Stdout); isMSB() && (len(f) == 0 || f[len(f)-1] != "512") {
		t.Fatalf("want 512 bytes read from the VM's disk: %v", e)
	}
	// Every capability this host's containerd has (root here lacks
	// CAP_SYS_RESOURCE): at least CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_MKNOD.
	out := mustCrictl(t, "exec", all, "sh", "-c", "grep CapEff /proc/self/status")
	caps, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(out, "CapEff:")), 16, 64)
	if want := uint64(1<<21 | 1<<12 | 1<<27); err != nil || caps&want != want {
		t.Errorf("a privileged container lacks capabilities: %s", out)
	}
	mustCrictl(t, "stop", plain, all)
	mustCrictl(t, "rm", plain, all)
}

// checkRefused checks tryScript's output: each of refused opens with
// EPERM both ways, the null node works.
func checkRefused(t *testing.T, r result, refused ...string) {
	t.Helper()
	t.Logf("%s", r.Stdout)
	if r.Code != 0 {
		t.Fatalf("%v", r)
	}
	lines := strings.Split(r.Stdout, "\n")
	for _, name := range refused {
		for _, op := range []string{"read", "write"} {
			if l := lineWith(lines, name+" "+op+": "); !strings.Contains(l, "Operation not permitted") {
				t.Errorf("opening the %s node for %s: want \"Operation not permitted\", got %q", name, op, l)
			}
		}
	}
	if lineWith(lines, "null read: ") != "null read: ok" || lineWith(lines, "null write: ") != "null write: ok" {
		t.Errorf("the /dev/null node (allowed) does not work in /tmp: %v", r)
	}
}

// testDisk returns "MAJOR MINOR" of a disk: the VM's first virtio-blk disk
// (its boot disk) under msb; under runc the first host disk that root here
// may open (a sandboxed host may refuse its real disk even to root).
func testDisk(t *testing.T) string {
	t.Helper()
	if isMSB() {
		return "254 0"
	}
	devs, _ := filepath.Glob("/sys/block/*/dev")
	dir := t.TempDir()
	for _, loops := range []bool{false, true} {
		for _, p := range devs {
			if strings.Contains(p, "/loop") != loops {
				continue
			}
			b, err := os.ReadFile(p)
			var major, minor uint32
			if _, serr := fmt.Sscanf(string(b), "%d:%d", &major, &minor); err != nil || serr != nil {
				continue
			}
			node := filepath.Join(dir, fmt.Sprintf("b%d-%d", major, minor))
			if unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))) != nil {
				continue
			}
			if f, err := os.Open(node); err == nil {
				f.Close()
				return fmt.Sprintf("%d %d", major, minor)
			}
		}
	}
	t.Skip("no block device that root may open on this host")
	return ""
}

func lineWith(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
