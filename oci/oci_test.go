package oci

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/rootfs"
	"github.com/msb-runtime/msb/vm"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) {
		t.Errorf("missing: %v", err)
	}
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(cfg, []byte("{\n  \"ociVersion\": \"1.2.0\",\n  \"process\": {\"args\": [\"sh\"],}\n}"), 0o644)
	_, err := Load(dir)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("broken JSON: %v", err)
	}
	os.WriteFile(cfg, []byte(`{"ociVersion": "1.2.0", "process": {"args": "sh"}}`), 0o644)
	if _, err := Load(dir); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "line 1, column") {
		t.Errorf("wrong type: %v", err)
	}
	os.WriteFile(cfg, []byte(`{"ociVersion": "1.2.0", "process": {"args": ["sh"], "cwd": "/"}, "hostname": "h"}`), 0o644)
	s, err := Load(dir)
	if err != nil || s.Hostname != "h" || s.Process.Args[0] != "sh" {
		t.Errorf("good spec: %+v, %v", s, err)
	}
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func withRes(r *specs.LinuxResources) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Resources: r}}
}

func TestVMSize(t *testing.T) {
	d := Defaults{HostCPUs: 8}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		d    Defaults
		want Size
		err  string
	}{
		{"nil spec", nil, d, Size{1, 256}, ""},
		{"no limits", &specs.Spec{}, d, Size{1, 256}, ""},
		{"runtime defaults", &specs.Spec{}, Defaults{VCPUs: 2, MemoryMiB: 512, HostCPUs: 8}, Size{2, 512}, ""},
		{"quota 1.5 cpus", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}), d, Size{2, 256}, ""},
		{"quota 0.1 cpu", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(10000), Period: u64(100000)}}), d, Size{1, 256}, ""},
		{"quota without period", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(300000)}}), d, Size{3, 256}, ""},
		{"quota -1 is unlimited", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}}), d, Size{1, 256}, ""},
		{"quota beats cpuset", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(200000), Period: u64(100000), Cpus: "0-5"}}), d, Size{2, 256}, ""},
		{"cpuset", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2,5,5"}}), d, Size{4, 256}, ""},
		{"more than the host", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(6400000), Period: u64(100000)}}), d, Size{8, 256}, ""},
		{"more than vm.MaxVCPUs", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(10000000), Period: u64(100000)}}), Defaults{HostCPUs: 512}, Size{vm.MaxVCPUs, 256}, ""},
		{"default wider than the host", &specs.Spec{}, Defaults{VCPUs: 16, HostCPUs: 2}, Size{2, 256}, ""},
		{"bad cpuset", withRes(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3-1"}}), d, Size{}, "cpu.cpus"},
		{"memory limit", withRes(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(512 << 20)}}), d, Size{1, 512 + GuestOverheadMiB}, ""},
		{"memory limit rounds up", withRes(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100<<20 + 1)}}), d, Size{1, 101 + GuestOverheadMiB}, ""},
		{"tiny memory limit", withRes(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(4096)}}), d, Size{1, 1 + GuestOverheadMiB}, ""},
		{"unlimited memory", withRes(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}}), d, Size{1, 256}, ""},
		{"huge memory", withRes(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(2 << 40)}}), d, Size{}, "exceeds"},
		{"small default", &specs.Spec{}, Defaults{MemoryMiB: 16, HostCPUs: 1}, Size{1, vm.MinMemoryMiB}, ""},
	} {
		got, err := VMSize(tc.spec, tc.d)
		if tc.err != "" {
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if got, err := VMSize(&specs.Spec{}, Defaults{}); err != nil || got.VCPUs != 1 || got.MemoryMiB != DefaultMemoryMiB {
		t.Errorf("host defaults: %+v, %v", got, err)
	}
}

func TestProcess(t *testing.T) {
	good := &specs.Process{Args: []string{"sh", "-c", "true"}, Cwd: "/", Env: []string{"PATH=/bin", "EMPTY=", "A=b=c"}}
	if err := Process(good); err != nil {
		t.Errorf("good process: %v", err)
	}
	for _, tc := range []struct {
		p    *specs.Process
		want string
	}{
		{nil, "missing"},
		{&specs.Process{Cwd: "/"}, "args are empty"},
		{&specs.Process{Args: []string{""}, Cwd: "/"}, "args[0] is empty"},
		{&specs.Process{Args: []string{"a\x00b"}, Cwd: "/"}, "args[0] contains a NUL"},
		{&specs.Process{Args: []string{"sh"}}, `cwd "" is not an absolute`},
		{&specs.Process{Args: []string{"sh"}, Cwd: "tmp"}, `cwd "tmp"`},
		{&specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"NOEQUALS"}}, "env[0] \"NOEQUALS\" is not KEY=VALUE"},
		{&specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"=x"}}, "empty name"},
		{&specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"A=1", "B=\x00"}}, "env[1] \"B\" contains a NUL"},
		{&specs.Process{Cwd: "rel", Env: []string{"x"}}, "nothing to run\ncwd \"rel\" is not an absolute path\nenv[0]"},
	} {
		err := Process(tc.p)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}

const id = "ctr1"

var root = rootfs.RootPath(id)

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: "/host/bundle/rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue"},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup2", Source: "cgroup", Options: []string{"ro"}},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
}

func TestGuestSpecPassThrough(t *testing.T) {
	s := baseSpec()
	orig, _ := json.Marshal(s)
	g, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if g.Spec.Root.Path != root || !g.Spec.Root.Readonly {
		t.Errorf("root %+v", g.Spec.Root)
	}
	if !reflect.DeepEqual(g.Spec.Mounts, s.Mounts) || len(g.Exports) != 0 || len(g.Warnings) != 0 {
		t.Errorf("pass-through mounts changed: %+v / %+v / %v", g.Spec.Mounts, g.Exports, g.Warnings)
	}
	if after, _ := json.Marshal(s); string(after) != string(orig) {
		t.Errorf("GuestSpec changed its input")
	}
	if g.Spec == s || g.Spec.Process == s.Process {
		t.Errorf("guest spec shares memory with the input")
	}
}

func TestGuestSpecBinds(t *testing.T) {
	host := t.TempDir()
	mk := func(p string) string {
		full := filepath.Join(host, p)
		os.MkdirAll(full, 0o755)
		return full
	}
	sandbox := mk("sandboxes/abc")
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		os.WriteFile(filepath.Join(sandbox, f), []byte(f), 0o644)
	}
	data := mk("data")
	sub := mk("data/sub")
	ro := mk("ro")
	roSub := mk("ro/inner")
	os.Symlink(data, filepath.Join(host, "link"))

	s := baseSpec()
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(sandbox, "hosts"), Options: []string{"rbind", "rprivate", "rw"}},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(sandbox, "resolv.conf"), Options: []string{"rbind", "rprivate", "ro"}},
		specs.Mount{Destination: "/etc/hostname", Source: filepath.Join(sandbox, "hostname"), Options: []string{"bind", "ro"}},
		specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rw"}},
		specs.Mount{Destination: "/sub", Type: "bind", Source: sub, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		specs.Mount{Destination: "/viasymlink", Type: "bind", Source: filepath.Join(host, "link"), Options: []string{"rbind"}},
		specs.Mount{Destination: "/ro", Type: "bind", Source: ro, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/ro-inner-rw", Type: "bind", Source: roSub, Options: []string{"rbind", "rw", "rslave"}},
	)
	g, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	// One export per bind: a file bind is that file, never its directory;
	// each keeps its own read-only flag, nested or not.
	type exp struct {
		src           string
		dir, rec, ro  bool
		rro, followed bool
	}
	want := []exp{
		{filepath.Join(sandbox, "hosts"), false, false, false, false, false},
		{filepath.Join(sandbox, "resolv.conf"), false, false, true, false, false},
		{filepath.Join(sandbox, "hostname"), false, false, true, false, false},
		{data, true, true, false, false, false},
		{sub, true, true, true, false, false},
		{data, true, true, false, false, false},
		{ro, true, true, true, false, false},
		{roSub, true, true, false, false, true},
	}
	if len(g.Exports) != len(want) {
		t.Fatalf("exports %+v, want %d", g.Exports, len(want))
	}
	for i, e := range g.Exports {
		got := exp{e.Source, e.Dir, e.Recursive, e.ReadOnly, e.RecursiveReadOnly, e.FollowHost}
		if got != want[i] || e.Name != fmt.Sprintf("m%d", 6+i) || e.Own || e.Validate() != nil {
			t.Errorf("export %d: %+v, want %+v", i, e, want[i])
		}
	}
	gm := g.Spec.Mounts[6:]
	for i := range gm {
		if wantSrc := "/run/msb/share/" + id + "/m" + strconv.Itoa(6+i); gm[i].Source != wantSrc {
			t.Errorf("bind %s: source %s, want %s", gm[i].Destination, gm[i].Source, wantSrc)
		}
		if !reflect.DeepEqual(gm[i].Options, s.Mounts[6+i].Options) || gm[i].Destination != s.Mounts[6+i].Destination {
			t.Errorf("bind %s: options or destination changed: %+v", gm[i].Destination, gm[i])
		}
	}
	// "rro" makes an export read-only all the way down; a plain "bind" of
	// a directory leaves its submounts out.
	s2 := baseSpec()
	s2.Mounts = append(s2.Mounts, specs.Mount{Destination: "/rro", Type: "bind", Source: ro, Options: []string{"rbind", "ro", "rro"}},
		specs.Mount{Destination: "/flat", Type: "bind", Source: ro, Options: []string{"bind"}})
	g2, err := GuestSpec(s2, GuestOptions{ContainerID: id, Root: root})
	if err != nil || !g2.Exports[0].RecursiveReadOnly || g2.Exports[0].Writable() || g2.Exports[1].Recursive || !g2.Exports[1].Writable() {
		t.Errorf("rro and plain binds: %+v, %v", g2.Exports, err)
	}
	// Any number of binds: they cost the VM no device.
	s3 := baseSpec()
	for i := range 40 {
		s3.Mounts = append(s3.Mounts, specs.Mount{Destination: fmt.Sprintf("/b%d", i), Type: "bind", Source: data, Options: []string{"rbind"}})
	}
	if g3, err := GuestSpec(s3, GuestOptions{ContainerID: id, Root: root}); err != nil || len(g3.Exports) != 40 {
		t.Errorf("40 binds: %v", err)
	}
}

// TestGuestSpecIDMappedBinds: an idmapped bind (CRI's for a user-namespace
// pod) is exported through an idmapped mount, and the guest binds it
// plainly; "idmap" without mappings takes the container's.
func TestGuestSpecIDMappedBinds(t *testing.T) {
	host := t.TempDir()
	idm := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 65536}}
	s := baseSpec()
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings, s.Linux.GIDMappings = idm, idm
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/plain", Type: "bind", Source: host, Options: []string{"rbind", "rw"}},
		specs.Mount{Destination: "/mapped", Type: "bind", Source: host, Options: []string{"rbind", "rw"}, UIDMappings: idm, GIDMappings: idm},
		specs.Mount{Destination: "/opt", Type: "bind", Source: host, Options: []string{"rbind", "ro", "idmap"}},
	)
	g, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Exports) != 3 {
		t.Fatalf("exports %+v, want a plain and two idmapped ones", g.Exports)
	}
	if e := g.Exports[0]; e.UIDMap != "" || e.GIDMap != "" {
		t.Errorf("plain export %+v", e)
	}
	for _, e := range g.Exports[1:] {
		if e.UIDMap != "0:1000:65536" || e.GIDMap != "0:1000:65536" || e.Source != host {
			t.Errorf("idmapped export %+v", e)
		}
	}
	for _, m := range g.Spec.Mounts[len(g.Spec.Mounts)-2:] {
		if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 || slices.Contains(m.Options, "idmap") {
			t.Errorf("guest mount %s keeps its idmapping: %+v", m.Destination, m)
		}
	}
}

func TestGuestSpecErrors(t *testing.T) {
	host := t.TempDir()
	sock := filepath.Join(host, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		name string
		edit func(*specs.Spec)
		kind func(error) bool
		want string
	}{
		{"no process", func(s *specs.Spec) { s.Process = nil }, errdefs.IsInvalidArgument, "process: missing"},
		{"bad process", func(s *specs.Spec) { s.Process.Cwd = "x" }, errdefs.IsInvalidArgument, "cwd"},
		{"socket bind", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/s", Type: "bind", Source: sock, Options: []string{"rbind"}})
		}, errdefs.IsNotImplemented, "is a socket"},
		{"device bind", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/kvm", Type: "bind", Source: "/dev/null", Options: []string{"bind"}})
		}, errdefs.IsNotImplemented, "character device"},
		{"missing bind source", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: filepath.Join(host, "nope"), Options: []string{"rbind"}})
		}, errdefs.IsNotFound, "bind source"},
		{"relative bind source", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "rel", Options: []string{"rbind"}})
		}, errdefs.IsInvalidArgument, "not an absolute host path"},
		{"relative destination", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "x", Type: "tmpfs", Source: "tmpfs"})
		}, errdefs.IsInvalidArgument, "absolute"},
		{"rshared", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: host, Options: []string{"rbind", "rshared"}})
		}, errdefs.IsNotImplemented, "rshared propagation"},
		{"idmapped without gid mappings", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: host, Options: []string{"rbind"},
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}})
		}, errdefs.IsInvalidArgument, "uid and gid mappings"},
		{"idmap option without a user namespace", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: host, Options: []string{"rbind", "idmap"}})
		}, errdefs.IsInvalidArgument, "uid and gid mappings"},
		{"idmapped tmpfs", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "tmpfs", Source: "tmpfs", Options: []string{"idmap"}})
		}, errdefs.IsNotImplemented, "only binds"},
		{"unknown bind option", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: host, Options: []string{"rbind", "Z"}})
		}, errdefs.IsNotImplemented, `bind option "Z"`},
		{"nfs mount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "nfs", Source: "srv:/x"})
		}, errdefs.IsNotImplemented, `mount type "nfs"`},
		{"join host pid ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/1/ns/ipc"})
		}, errdefs.IsNotImplemented, "ipc namespace /proc/1/ns/ipc"},
		{"createContainer hook", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{{Path: "/usr/bin/hook"}}}
		}, errdefs.IsNotImplemented, "/usr/bin/hook"},
		{"host device", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0}}
		}, errdefs.IsNotImplemented, "/dev/sda (b 8:0)"},
		{"host char device", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/nvidia0", Type: "c", Major: 195, Minor: 0}}
		}, errdefs.IsNotImplemented, "/dev/nvidia0"},
		{"intelRdt", func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"} }, errdefs.IsNotImplemented, "intelRdt"},
		{"netDevices", func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {}} }, errdefs.IsNotImplemented, "netDevices"},
		{"vm section", func(s *specs.Spec) { s.VM = &specs.VM{} }, errdefs.IsNotImplemented, "vm section"},
		{"windows section", func(s *specs.Spec) { s.Windows = &specs.Windows{} }, errdefs.IsNotImplemented, "windows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := baseSpec()
			tc.edit(s)
			_, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
			if err == nil || !tc.kind(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a %q error", err, tc.want)
			}
		})
	}
	if _, err := GuestSpec(baseSpec(), GuestOptions{ContainerID: "a/b", Root: root}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := GuestSpec(baseSpec(), GuestOptions{ContainerID: id, Root: "rel"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative root: %v", err)
	}
	if _, err := GuestSpec(nil, GuestOptions{ContainerID: id, Root: root}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil spec: %v", err)
	}
}

func TestGuestSpecNamespacesHooksResources(t *testing.T) {
	s := baseSpec()
	s.Linux.Namespaces = append(s.Linux.Namespaces,
		specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1234"},
		specs.LinuxNamespace{Type: specs.UTSNamespace})
	s.Hooks = &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: "/usr/local/bin/nerdctl", Args: []string{"nerdctl", "internal", "oci-hook", "createRuntime"}}},
		Poststop:      []specs.Hook{{Path: "/usr/local/bin/nerdctl"}},
	}
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "/dev/null", Type: "c", Major: 1, Minor: 3}, {Path: "/dev/p", Type: "p"}}
	weight := uint16(100)
	s.Linux.Resources = &specs.LinuxResources{
		CPU:     &specs.LinuxCPU{Cpus: "2-3", Mems: "0", Quota: i64(50000), Period: u64(100000)},
		Memory:  &specs.LinuxMemory{Limit: i64(64 << 20)},
		BlockIO: &specs.LinuxBlockIO{Weight: &weight, ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1}}},
	}
	g, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if g.NetNS != "/var/run/netns/cni-1234" {
		t.Errorf("netns %q", g.NetNS)
	}
	want := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace}}
	if !reflect.DeepEqual(g.Spec.Linux.Namespaces, want) {
		t.Errorf("namespaces %+v", g.Spec.Linux.Namespaces)
	}
	if g.Spec.Hooks != nil || g.HostHooks == nil || len(g.HostHooks.CreateRuntime) != 1 || len(g.HostHooks.Poststop) != 1 {
		t.Errorf("hooks: guest %+v host %+v", g.Spec.Hooks, g.HostHooks)
	}
	c := g.Spec.Linux.Resources.CPU
	if c.Cpus != "" || c.Mems != "" || *c.Quota != 50000 || *g.Spec.Linux.Resources.Memory.Limit != 64<<20 {
		t.Errorf("resources %+v", g.Spec.Linux.Resources)
	}
	if b := g.Spec.Linux.Resources.BlockIO; b.ThrottleReadBpsDevice != nil || *b.Weight != 100 {
		t.Errorf("blockIO %+v", b)
	}
	if len(g.Spec.Linux.Devices) != 3 {
		t.Errorf("devices %+v", g.Spec.Linux.Devices)
	}
	joined := strings.Join(g.Warnings, "\n")
	for _, w := range []string{"cpu.cpus \"2-3\"", "blockIO"} {
		if !strings.Contains(joined, w) {
			t.Errorf("no warning about %q in %q", w, joined)
		}
	}
	// The input is untouched.
	if s.Linux.Resources.CPU.Cpus != "2-3" || s.Hooks == nil || len(s.Linux.Namespaces) != 4 {
		t.Errorf("input changed")
	}
}

func TestGuestSpecPodNamespaces(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"}, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"},
		{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1"},
		{Type: specs.MountNamespace},
	}}}
	opts := GuestOptions{ContainerID: "c1", Root: "/run/msb/c/c1/rootfs"}
	if _, err := GuestSpec(s, opts); err == nil {
		t.Fatal("a host IPC namespace path was accepted outside a pod")
	}
	opts.PodSandboxID = "sb1"
	g, err := GuestSpec(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	if g.NetNS != "/var/run/netns/cni-1" || len(g.Spec.Linux.Namespaces) != 1 || g.Spec.Linux.Namespaces[0].Type != specs.MountNamespace {
		t.Fatalf("netns %q, namespaces %+v", g.NetNS, g.Spec.Linux.Namespaces)
	}
	// A pod that shares its sandbox's PID namespace joins the sandbox
	// container's in the guest.
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"})
	if g, err = GuestSpec(s, opts); err != nil {
		t.Fatal(err)
	}
	if ns := g.Spec.Linux.Namespaces; len(ns) != 2 || ns[1].Type != specs.PIDNamespace || ns[1].Path != "container:sb1" {
		t.Fatalf("pid namespace in a pod: %+v", ns)
	}
	// CRI's pinned host user namespace: the guest makes its own with the
	// spec's mappings, which must map root.
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/42/ns/user"})
	if _, err := GuestSpec(s, opts); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "uidMappings") {
		t.Fatalf("a user namespace without mappings: %v", err)
	}
	idm := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 65536}}
	s.Linux.UIDMappings, s.Linux.GIDMappings = idm, idm
	if g, err = GuestSpec(s, opts); err != nil {
		t.Fatal(err)
	}
	if ns := g.Spec.Linux.Namespaces; ns[len(ns)-1] != (specs.LinuxNamespace{Type: specs.UserNamespace}) || len(g.Spec.Linux.UIDMappings) != 1 {
		t.Fatalf("user namespace in the guest spec: %+v, %+v", ns, g.Spec.Linux.UIDMappings)
	}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 1, HostID: 1000, Size: 65536}}
	if _, err := GuestSpec(s, opts); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not mapped") {
		t.Fatalf("gid 0 unmapped: %v", err)
	}
	s.Linux.Namespaces = s.Linux.Namespaces[:len(s.Linux.Namespaces)-1]
	if _, err := GuestSpec(s, opts); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("mappings without a user namespace: %v", err)
	}
}

// TestGuestSpecPrivilegedDevices: containerd lists the host's devices for a
// privileged container; those the VM lacks are dropped with one warning,
// while the same device in any other container is an error.
func TestGuestSpecPrivilegedDevices(t *testing.T) {
	host := []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
		{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0}, {Path: "/dev/btrfs-control", Type: "c", Major: 10, Minor: 234}}
	privileged := func(s *specs.Spec) {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}}
		s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Access: "rwm"}}}
		s.Linux.Devices = slices.Clone(host)
	}
	s := baseSpec()
	privileged(s)
	g, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Spec.Linux.Devices) != 1 || g.Spec.Linux.Devices[0].Path != "/dev/null" {
		t.Errorf("devices %+v, want /dev/null only", g.Spec.Linux.Devices)
	}
	if len(g.Warnings) != 1 || !strings.Contains(g.Warnings[0], "2 host devices") || !strings.Contains(g.Warnings[0], "/dev/btrfs-control") {
		t.Errorf("warnings %q", g.Warnings)
	}
	for name, edit := range map[string]func(*specs.Spec){
		"no CAP_SYS_ADMIN": func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_CHOWN"} },
		"not every device": func(s *specs.Spec) { s.Linux.Resources.Devices[1].Access = "rw" },
		"a device denied after": func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Type: "b", Access: "rwm"})
		},
	} {
		s := baseSpec()
		privileged(s)
		edit(s)
		if _, err := GuestSpec(s, GuestOptions{ContainerID: id, Root: root}); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "/dev/sda") {
			t.Errorf("%s: %v, want the host device refused", name, err)
		}
	}
}
