package container

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/internal/roottest"
	"github.com/msb-runtime/msb/agent/mount"
	"github.com/msb-runtime/msb/agent/process"
)

const testIDMap = "0:100000:65536"

// usernsContainer creates a container with a user namespace (container
// root = host uid 100000) on an overlay whose layers are idmapped, as the
// EROFS snapshotter asks with uidmap=/gidmap=.
func usernsContainer(t *testing.T, cfg Config, id string, ns []specs.LinuxNamespace) (*Container, string) {
	t.Helper()
	image := imageDir(t)
	for _, a := range []string{"id", "readlink", "mkdir"} {
		os.Symlink("busybox", filepath.Join(image, "bin", a))
	}
	dir := t.TempDir()
	// The namespace's root may only pass through directories that others
	// may search, like the agent's /run/msb.
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(image), image} {
		os.Chmod(d, 0o755)
	}
	rw, root := filepath.Join(dir, "rw"), filepath.Join(dir, "rootfs")
	plan := []*api.Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: rw},
		{Type: "overlay", Source: "overlay", Target: root, Mkdirs: []string{rw + "/upper", rw + "/work"},
			Options: []string{"lowerdir=" + image, "upperdir=" + rw + "/upper", "workdir=" + rw + "/work",
				"uidmap=" + testIDMap, "gidmap=" + testIDMap}},
	}
	idm := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Mounts:  append([]specs.Mount{}, defaultSpecMounts[:4]...),
		Linux: &specs.Linux{
			Namespaces:  ns,
			UIDMappings: idm,
			GIDMappings: idm,
			MaskedPaths: []string{"/proc/version"},
		},
	}
	return createSpec(t, cfg, id, plan, s), dir
}

func usernsConfig(t *testing.T) Config {
	return Config{Planner: mount.Planner{Userns: process.UsernsFD}, CgroupParent: cgroupParent(t), NSEnter: roottest.NSEnter(t)}
}

// TestRootUserNamespace: the init is in a new user namespace with the
// spec's mappings, an exec joins it (and its mount namespace, where its
// /proc is), the image's root-owned files are the container root's, and
// what the container root writes is stored with the image's ids.
func TestRootUserNamespace(t *testing.T) {
	cfg := usernsConfig(t)
	c, dir := usernsContainer(t, cfg, "userns", []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.UserNamespace}, {Type: specs.MountNamespace}})
	initP := startInit(t, c)
	initNS, _ := os.Readlink("/proc/" + strconv.Itoa(initP.Pid()) + "/ns/user")
	selfNS, _ := os.Readlink("/proc/self/ns/user")
	if initNS == selfNS {
		t.Fatal("init shares the agent's user namespace")
	}
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(initP.Pid()) + "/uid_map"); strings.Fields(string(b))[1] != "100000" {
		t.Fatalf("init's uid_map %q", b)
	}
	script := `cat /proc/self/uid_map; readlink /proc/self/ns/user; id -u; stat -c '%u:%g' /bin/busybox /;
cat /proc/1/cmdline; echo; touch /made && mkdir /etc/d && stat -c '%u:%g' /made /etc/d; wc -c < /proc/version`
	out, status := run(t, c, "e0", "sh", "-c", script)
	if status != 0 {
		t.Fatalf("status %d:\n%s", status, out)
	}
	lines := strings.Split(out, "\n")
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "0" || f[1] != "100000" || f[2] != "65536" {
		t.Errorf("exec's uid_map %q, want 0 100000 65536:\n%s", lines[0], out)
	}
	if lines[1] != initNS {
		t.Errorf("exec in user namespace %q, init in %q", lines[1], initNS)
	}
	for i, want := range []string{"0", "0:0", "0:0", "sleep\x00100\x00", "0:0", "0:0", "0"} {
		if i+2 >= len(lines) || lines[i+2] != want {
			t.Errorf("line %d = %q, want %q:\n%s", i+2, lines[min(i+2, len(lines)-1)], want, out)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "rw/upper/made"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("/made in the upper layer: uid %d gid %d (%v), want the image's 0:0", st.Uid, st.Gid, err)
	}
}
