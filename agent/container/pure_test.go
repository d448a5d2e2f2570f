package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	os.Symlink("/usr/lib", filepath.Join(root, "lib"))           // absolute: from the root
	os.Symlink("../../../../etc", filepath.Join(root, "usr/up")) // climbs above the root
	os.Symlink("usr/lib/../lib", filepath.Join(root, "rel"))     // relative
	os.Symlink("loop2", filepath.Join(root, "loop1"))
	os.Symlink("loop1", filepath.Join(root, "loop2"))
	for in, want := range map[string]string{
		"/":               "/",
		"/usr/lib":        "/usr/lib",
		"/lib/x":          "/usr/lib/x",
		"/usr/up/passwd":  "/etc/passwd",
		"/../../etc":      "/etc",
		"/rel/y":          "/usr/lib/y",
		"/missing/a/../b": "/missing/b",
		"usr//./lib/":     "/usr/lib",
	} {
		got, err := SecureJoin(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("SecureJoin(%q) = %q, %v; want %q", in, got, err, filepath.Join(root, want))
		}
	}
	if _, err := SecureJoin(root, "/loop1/x"); err == nil || !strings.Contains(err.Error(), unix.ELOOP.Error()) {
		t.Errorf("symlink loop: %v", err)
	}
}

// defaultSpecMounts are containerd's default mounts.
var defaultSpecMounts = []specs.Mount{
	{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
	{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
	{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	{Destination: "/etc/resolv.conf", Type: "bind", Source: "/run/msb/c1/resolv.conf", Options: []string{"rbind", "ro"}},
	{Destination: "/data/", Source: "/mnt/share", Options: []string{"rbind", "rw"}},
}

func TestSpecMounts(t *testing.T) {
	ms, err := specMounts(defaultSpecMounts, "/sys/fs/cgroup/msb/c1")
	if err != nil {
		t.Fatal(err)
	}
	check := func(i int, dest, typ, src string, flags uintptr, data string) {
		t.Helper()
		m := ms[i]
		if m.Dest != dest || m.Type != typ || m.Source != src || m.Opts.Flags != flags || m.Opts.DataString() != data {
			t.Errorf("mount %d = %+v (data %q)", i, m, m.Opts.DataString())
		}
	}
	nse := uintptr(unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV)
	check(0, "/proc", "proc", "proc", nse, "")
	check(1, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k")
	check(2, "/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
	check(4, "/dev/mqueue", "mqueue", "mqueue", nse, "")
	check(5, "/sys", "sysfs", "sysfs", nse|unix.MS_RDONLY, "")
	check(6, "/sys/fs/cgroup", "", "/sys/fs/cgroup/msb/c1", nse|unix.MS_RELATIME|unix.MS_RDONLY|unix.MS_BIND|unix.MS_REC, "")
	check(7, "/etc/resolv.conf", "", "/run/msb/c1/resolv.conf", unix.MS_BIND|unix.MS_REC|unix.MS_RDONLY, "")
	check(8, "/data", "", "/mnt/share", unix.MS_BIND|unix.MS_REC, "")
	if !ms[4].Optional || ms[0].Optional {
		t.Error("only mqueue is optional")
	}
	if bindsDev(ms) {
		t.Error("/dev is not bound")
	}
	noCg, _ := specMounts(defaultSpecMounts[6:7], "")
	if noCg[0].Type != "cgroup2" || noCg[0].Opts.IsBind() {
		t.Errorf("cgroup without a group: %+v", noCg[0])
	}
}

func TestSpecMountsRejects(t *testing.T) {
	for _, m := range []specs.Mount{
		{Destination: "proc", Type: "proc", Source: "proc"},
		{Destination: "/a/../../etc", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/x", Type: "bind", Source: "relative/src", Options: []string{"rbind"}},
		{Destination: "/x", Source: "src"},
	} {
		_, err := specMounts([]specs.Mount{{Destination: "/ok", Type: "tmpfs"}, m}, "")
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "spec mount 1") {
			t.Errorf("%+v: %v", m, err)
		}
	}
}

func TestParseSpec(t *testing.T) {
	if _, err := parseSpec(nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty spec: %v", err)
	}
	if _, err := parseSpec([]byte("{")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad JSON: %v", err)
	}
	s, err := parseSpec([]byte(`{"ociVersion":"1.2.0","hostname":"h","linux":{"namespaces":[{"type":"pid"},{"type":"cgroup"}]}}`))
	if err != nil || s.Hostname != "h" || !hasNamespace(s, specs.CgroupNamespace) || hasNamespace(s, specs.NetworkNamespace) {
		t.Fatalf("spec %+v, %v", s, err)
	}
}

func TestUnderNSProc(t *testing.T) {
	c := &Container{Root: "/r", nsProcs: []nsProc{{dest: "/proc", target: "/r/proc"}}}
	for in, want := range map[string]string{
		"/proc":          "/r/proc",
		"/proc/kcore":    "/r/proc/kcore",
		"/proc//sys/":    "/r/proc/sys",
		"/processes":     "",
		"/sys/firmware":  "",
		"relative/proc":  "",
		"/proc/../etc/x": "",
	} {
		got, ok := c.underNSProc(in)
		if got != want || ok != (want != "") {
			t.Errorf("underNSProc(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
