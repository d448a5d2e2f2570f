//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The guest is hostile: these tests play a guest root that mounts every
// virtio-fs tag the VM has and tries what the host must not allow, and
// assert what the host then holds (docs/security.md).

// shareHost is a host tree with the things a careless share would expose: a
// file bound from directly under / (so a share of its directory would be
// the host's root), a secret next to a bound file, and a read-only
// directory bound inside a writable one.
type shareHost struct {
	rootFile, dir, secret, rwFile, data, sub string
}

func newShareHost(t *testing.T) shareHost {
	t.Helper()
	d := t.TempDir()
	h := shareHost{rootFile: "/msb-e2e-" + runToken + ".conf", dir: d, secret: filepath.Join(d, "secret"),
		rwFile: filepath.Join(d, "rw.conf"), data: filepath.Join(d, "data"), sub: filepath.Join(d, "data", "sub")}
	if err := os.MkdirAll(h.sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(h.rootFile) })
	for p, s := range map[string]string{h.rootFile: "root-file", h.secret: "host-secret", h.rwFile: "rw-file",
		filepath.Join(h.data, "a"): "data-a", filepath.Join(h.sub, "f"): "sub-f"} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// binds are the container's bind mounts of the host tree.
func (h shareHost) binds() []string {
	return []string{
		"--mount", "type=bind,src=" + h.rootFile + ",dst=/etc/x.conf,options=rbind:ro",
		"--mount", "type=bind,src=" + h.rwFile + ",dst=/etc/rw.conf,options=rbind:rw",
		"--mount", "type=bind,src=" + h.data + ",dst=/data,options=rbind:rw",
		"--mount", "type=bind,src=" + h.sub + ",dst=/data/sub,options=rbind:ro",
	}
}

// mountTags is a guest root's attack: mount every virtio-fs tag the VM has
// under /mnt/<tag>, writable.
const mountTags = `set -e; n=0
for d in /sys/fs/virtiofs/*; do tag=$(cat $d/tag); mkdir -p /mnt/$tag; mount -t virtiofs -o rw $tag /mnt/$tag; n=$((n+1)); done
echo tags=$n; `

// TestShareExposesOnlyBinds: a guest root that mounts every share it can
// find sees exactly the bound files and directories: not the directory of
// a file bind (the host's / for a file under it, the secret next to the rw
// file), and writes to what is read-only fail on the host side too.
func TestShareExposesOnlyBinds(t *testing.T) {
	skipUnlessMSB(t, "runc has no virtio-fs shares")
	for _, snap := range []string{"erofs", "overlayfs"} {
		t.Run(snap, func(t *testing.T) { testShareExposesOnlyBinds(t, snap) })
	}
}

func testShareExposesOnlyBinds(t *testing.T, snapshotter string) {
	h := newShareHost(t)
	id := newID(t)
	before := captureHostState(t)
	args := append([]string{"run", "-d", "--privileged", "--runtime", runtimeName, "--snapshotter", snapshotter}, h.binds()...)
	mustCtr(t, append(args, busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
	c := "/mnt/msb/" + id
	// Everything the shares hold, except the container's image: its root
	// when the snapshotter's root is a host directory (exported as
	// "root"), and its layers and writable layer when they come as files
	// (l<N>, rw: in a VM claimed from the warm pool).
	out := execIn(t, id, mountTags+
		`ls /mnt; ls `+c+`; for f in $(find /mnt -path '*/root' -prune -o -path '`+c+`/l[0-9]*' -prune -o -path '`+c+`/rw' -prune -o -type f -print); do cat $f; echo; done | sort | tr '\n' ' '; echo; `+
		`set +e; for f in `+c+`/m*; do [ -f $f ] && echo guest >$f 2>/dev/null && echo wrote $f; done; echo tried`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || lines[0] != "tags=1" || lines[1] != "msb" {
		t.Fatalf("want exactly one share (tag msb), got:\n%s", out)
	}
	var names, contents []string
	for _, l := range lines[2:] {
		switch {
		case strings.HasPrefix(l, "m") || l == "root":
			names = append(names, l)
		case strings.Contains(l, "data-a"):
			contents = strings.Fields(l)
		}
	}
	wantNames := 4
	if snapshotter == "overlayfs" {
		wantNames++ // the root, a host directory the shim mounted
	}
	if len(names) != wantNames {
		t.Errorf("the container's part of the share holds %v, want one entry per bind", names)
	}
	// data-a and sub-f through the data bind, sub-f through the sub bind.
	if want := []string{"data-a", "root-file", "rw-file", "sub-f", "sub-f"}; !slices.Equal(contents, want) {
		t.Errorf("files reachable through the share: %v, want %v (nothing else of the host)", contents, want)
	}
	if n := strings.Count(out, "wrote "); n != 1 {
		t.Errorf("the guest wrote %d exported files, want only the read-write file bind:\n%s", n, out)
	}
	for p, want := range map[string]string{h.rootFile: "root-file", h.secret: "host-secret", h.rwFile: "guest\n"} {
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("host file %s: %q, %v; want %q", p, b, err, want)
		}
	}
	if err := removeContainer(id); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t, before)
}

// TestNestedReadOnlyBind: a read-only bind inside a writable one stays
// read-only in the container, as with runc.
func TestNestedReadOnlyBind(t *testing.T) {
	h := newShareHost(t)
	r := runCtr(t, h.binds(), busybox, newID(t), "sh", "-c",
		"echo c >/data/new && echo data-rw; { echo c >/data/sub/f; } 2>&1; cat /data/sub/f; echo; { echo c >/etc/x.conf; } 2>&1; echo c >/etc/rw.conf && echo rw-ok")
	if r.Code != 0 || !strings.Contains(r.Stdout, "data-rw") || strings.Count(r.Stdout, "Read-only file system") != 2 ||
		!strings.Contains(r.Stdout, "sub-f") || !strings.Contains(r.Stdout, "rw-ok") {
		t.Fatalf("want /data writable, /data/sub and /etc/x.conf read-only, /etc/rw.conf writable: %v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(h.sub, "f")); string(b) != "sub-f" {
		t.Errorf("the host file behind the nested read-only bind changed: %q", b)
	}
}

// TestShareSymlinkNotFollowedByHost: symlinks a guest plants in a writable
// bind, pointing outside it, lead nowhere on the host: the guest resolves
// them in its own file system, and the host's cleanup removes nothing they
// point at.
func TestShareSymlinkNotFollowedByHost(t *testing.T) {
	skipUnlessMSB(t, "runc has no virtio-fs shares")
	h := newShareHost(t)
	id := newID(t)
	before := captureHostState(t)
	args := append([]string{"run", "-d", "--privileged", "--runtime", runtimeName, "--snapshotter", "erofs"}, h.binds()...)
	mustCtr(t, append(args, busybox, id, "sleep", "300")...)
	waitStatus(t, id, "RUNNING")
	up := strings.Repeat("../", 12)
	out := execIn(t, id, mountTags+fmt.Sprintf(
		`set +e; cd /mnt/msb/%s; for d in m*; do [ -d $d ] && ln -s %s $d/evil-up && ln -s %s $d/evil-abs && ln -s %s $d/evil-secret; done; `+
			`cat */evil-secret */evil-up/%s */evil-abs/secret 2>&1; echo done`,
		id, up, h.dir, h.secret, strings.TrimPrefix(h.secret, "/")))
	if strings.Contains(out, "host-secret") {
		t.Fatalf("the guest read a host file through a symlink it planted:\n%s", out)
	}
	if err := removeContainer(id); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t, before)
	for _, p := range []string{h.secret, h.rootFile, filepath.Join(h.sub, "f")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("host file %s after the cleanup: %v", p, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(h.data, "evil-secret")); err != nil || l != h.secret {
		t.Errorf("the planted symlink is the bound directory's content and stays: %q, %v", l, err)
	}
}

// TestPodImagesNotMountedOnHost: a pod of three containers on the EROFS
// snapshotter: each container has its own root, and no image (EROFS, ext4
// or an overlay of them) is mounted by the host kernel, in the host's or
// the shim's mount namespace: the later containers' layers reach the guest
// as files, which the guest kernel mounts.
func TestPodImagesNotMountedOnHost(t *testing.T) {
	criImages(t)
	before := captureHostState(t)
	p := runPod(t, "e2e-imgpod-", map[string]any{"linux": map[string]any{}})
	var ids []string
	for i := 1; i <= 3; i++ {
		name := "c" + strconv.Itoa(i)
		ids = append(ids, p.start(t, name, map[string]any{}, "sh", "-c", "echo "+name+" >/marker; exec sleep 100000"))
	}
	for i, c := range ids {
		want := "c" + strconv.Itoa(i+1)
		if err := eventually(func() error {
			if out := crictl(t, "exec", c, "cat", "/marker"); strings.TrimSpace(out.Stdout) != want {
				return fmt.Errorf("container %s sees /marker %q, want its own %q", want, out.Stdout, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if isMSB() { // runc's layers are mounted by the host kernel
		for _, pid := range append(podProcesses(t), os.Getpid()) {
			if m := imageMounts(t, pid); len(m) > 0 {
				t.Errorf("process %d's mount namespace holds image mounts made by the host kernel:\n  %s", pid, strings.Join(m, "\n  "))
			}
		}
	}
	mustCrictl(t, append([]string{"stop"}, ids...)...)
	mustCrictl(t, append([]string{"rm"}, ids...)...)
	mustCrictl(t, "stopp", p.id)
	mustCrictl(t, "rmp", p.id)
	checkNoLeaks(t, before)
}

// podProcesses are the CRI pod's shim and its descendants (VMM, virtiofsd).
func podProcesses(t *testing.T) []int {
	t.Helper()
	ps := procs()
	var shims []int
	for _, p := range ps {
		if p.exe == shimName() && strings.Contains(p.cmdline, " -namespace "+criNamespace+" ") {
			shims = append(shims, p.pid)
		}
	}
	if len(shims) != 1 {
		t.Fatalf("want one shim for the pod, found %v", shims)
	}
	return append(shims, vmPIDs(shims[0])...)
}

// imageMounts lists pid's mounts of image file systems: erofs, ext4 on a
// loop device, and overlays (the shim makes none: the overlayfs
// snapshotter's roots are not used here).
func imageMounts(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil // gone
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		_, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(post)
		if !ok || len(f) < 2 {
			continue
		}
		if f[0] == "erofs" || f[0] == "overlay" && strings.Contains(line, ctdRoot) || f[0] == "ext4" && strings.HasPrefix(f[1], "/dev/loop") {
			out = append(out, line)
		}
	}
	return out
}

// execIn runs script with sh in container id and returns its stdout.
func execIn(t *testing.T, id, script string) string {
	t.Helper()
	r := ctr(t, "task", "exec", "--exec-id", "x"+strconv.Itoa(int(idSeq.Add(1))), id, "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("exec in %s: %v", id, r)
	}
	return r.Stdout
}
