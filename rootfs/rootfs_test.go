package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/vm"
)

const testID = "ctr1"

// snapDir is a fake EROFS snapshotter root: R/<n>/layer.erofs files exist
// (their content is irrelevant to plans that merge nothing).
type snapDir string

func newSnapDir(t testing.TB, layers ...int) snapDir {
	t.Helper()
	r := t.TempDir()
	for _, n := range layers {
		d := filepath.Join(r, itoa(n))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "layer.erofs"), []byte("blob"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return snapDir(r)
}

func itoa(n int) string { return strconv.Itoa(n) }

func (r snapDir) layer(n int) string { return filepath.Join(string(r), itoa(n), "layer.erofs") }
func (r snapDir) path(p ...string) string {
	return filepath.Join(append([]string{string(r)}, p...)...)
}

func erofsM(src string, extra ...string) *types.Mount {
	return &types.Mount{Type: "erofs", Source: src, Options: append([]string{"ro", "loop"}, extra...)}
}

func mkfsM(img string) *types.Mount {
	return &types.Mount{Type: "mkfs/ext4", Source: img, Options: []string{
		"X-containerd.mkfs.fs=ext4", "X-containerd.mkfs.size=67108864", "rw", "loop"}}
}

func blockOverlay(lower string) *types.Mount {
	return &types.Mount{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
		"X-containerd.mkdir.path={{ mount 0 }}/upper:0755",
		"X-containerd.mkdir.path={{ mount 0 }}/work:0755",
		"workdir={{ mount 0 }}/work",
		"upperdir={{ mount 0 }}/upper",
		"lowerdir=" + lower,
	}}
}

const (
	g     = "/run/msb/c/" + testID
	groot = g + "/rootfs"
)

func TestPrepareShapes(t *testing.T) {
	r := newSnapDir(t, 1, 2, 3, 4, 7)
	fsmeta := r.path("4", "fsmeta.erofs")
	if err := os.WriteFile(fsmeta, []byte("meta"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := r.path("7", "rwlayer.img")
	p := DefaultSerialPrefix(testID)
	rw := api.Mount{Type: "ext4", Source: "disk:" + p + "-rw", Target: g + "/rw", Options: []string{"rw"}}
	mkdirs := []string{g + "/rw/upper:0755", g + "/rw/work:0755"}
	ovl := func(lower string) *api.Mount {
		return &api.Mount{Type: "overlay", Source: "overlay", Target: groot, Mkdirs: mkdirs, Options: []string{
			"workdir=" + g + "/rw/work", "upperdir=" + g + "/rw/upper", "lowerdir=" + lower}}
	}
	lay := func(i int, opts ...string) *api.Mount {
		return &api.Mount{Type: "erofs", Source: "disk:" + p + "-l" + itoa(i), Target: g + "/layers/" + itoa(i),
			Options: append([]string{"ro"}, opts...)}
	}
	disk := func(suffix, path string, ro bool) vm.Disk {
		return vm.Disk{ID: p + "-" + suffix, Path: path, Format: "raw", ReadOnly: ro}
	}
	for _, tc := range []struct {
		name   string
		mounts []*types.Mount
		disks  []vm.Disk
		plan   []*api.Mount
	}{
		{
			name:   "block mode, 3 layers",
			mounts: []*types.Mount{mkfsM(img), erofsM(r.layer(4)), erofsM(r.layer(3)), erofsM(r.layer(2)), blockOverlay("{{ overlay 1 3 }}")},
			disks:  []vm.Disk{disk("rw", img, false), disk("l1", r.layer(4), true), disk("l2", r.layer(3), true), disk("l3", r.layer(2), true)},
			plan:   []*api.Mount{&rw, lay(1), lay(2), lay(3), ovl(g + "/layers/1:" + g + "/layers/2:" + g + "/layers/3")},
		},
		{
			name:   "block mode, 1 layer",
			mounts: []*types.Mount{mkfsM(img), erofsM(r.layer(1)), blockOverlay("{{ mount 1 }}")},
			disks:  []vm.Disk{disk("rw", img, false), disk("l1", r.layer(1), true)},
			plan:   []*api.Mount{&rw, lay(1), ovl(g + "/layers/1")},
		},
		{
			name: "block mode, idmapped layers",
			mounts: []*types.Mount{mkfsM(img), erofsM(r.layer(1)),
				blockOverlayWith("{{ mount 1 }}", "uidmap=0:1000:65536", "gidmap=0:1000:65536")},
			disks: []vm.Disk{disk("rw", img, false), disk("l1", r.layer(1), true)},
			plan: []*api.Mount{&rw, lay(1), func() *api.Mount {
				m := ovl(g + "/layers/1")
				m.Options = append(m.Options, "uidmap=0:1000:65536", "gidmap=0:1000:65536")
				return m
			}()},
		},
		{
			name: "block mode, no parent",
			mounts: []*types.Mount{mkfsM(img), {Type: "format/mkdir/bind", Source: "{{ mount 0 }}/upper", Options: []string{
				"X-containerd.mkdir.path={{ mount 0 }}/upper:0755", "rw", "rbind"}}},
			disks: []vm.Disk{disk("rw", img, false)},
			plan: []*api.Mount{&rw, {Type: "bind", Source: g + "/rw/upper", Target: groot,
				Options: []string{"rw", "rbind"}, Mkdirs: []string{g + "/rw/upper:0755"}}},
		},
		{
			name: "block mode, fsmeta",
			mounts: []*types.Mount{mkfsM(img),
				erofsM(fsmeta, "device="+r.layer(2), "device="+r.layer(3), "device="+r.layer(4)),
				blockOverlay("{{ mount 1 }}")},
			disks: []vm.Disk{disk("rw", img, false), disk("l1", fsmeta, true),
				disk("l1d0", r.layer(2), true), disk("l1d1", r.layer(3), true), disk("l1d2", r.layer(4), true)},
			plan: []*api.Mount{&rw, lay(1, "device=disk:"+p+"-l1d0", "device=disk:"+p+"-l1d1", "device=disk:"+p+"-l1d2"),
				ovl(g + "/layers/1")},
		},
		{
			name: "block mode, a layer above an fsmeta",
			mounts: []*types.Mount{mkfsM(img), erofsM(r.layer(1)),
				erofsM(fsmeta, "device="+r.layer(2), "device="+r.layer(3)),
				blockOverlay("{{ overlay 1 2 }}")},
			disks: []vm.Disk{disk("rw", img, false), disk("l1", r.layer(1), true), disk("l2", fsmeta, true),
				disk("l2d0", r.layer(2), true), disk("l2d1", r.layer(3), true)},
			plan: []*api.Mount{&rw, lay(1), lay(2, "device=disk:"+p+"-l2d0", "device=disk:"+p+"-l2d1"),
				ovl(g + "/layers/1:" + g + "/layers/2")},
		},
		{
			name: "view of 3 layers (read-only overlay)",
			mounts: []*types.Mount{erofsM(r.layer(4)), erofsM(r.layer(3)), erofsM(r.layer(2)),
				{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{"lowerdir={{ overlay 0 2 }}"}}},
			disks: []vm.Disk{disk("l0", r.layer(4), true), disk("l1", r.layer(3), true), disk("l2", r.layer(2), true)},
			plan: []*api.Mount{lay(0), lay(1), lay(2), {Type: "overlay", Source: "overlay", Target: groot,
				Options: []string{"lowerdir=" + g + "/layers/0:" + g + "/layers/1:" + g + "/layers/2"}}},
		},
		{
			name:   "view of 1 layer",
			mounts: []*types.Mount{erofsM(r.layer(1))},
			disks:  []vm.Disk{disk("l0", r.layer(1), true)},
			plan:   []*api.Mount{{Type: "erofs", Source: "disk:" + p + "-l0", Target: groot, Options: []string{"ro"}}},
		},
		{
			name: "populated single layer, read-only bind",
			mounts: []*types.Mount{erofsM(r.layer(1)),
				{Type: "format/bind", Source: "{{ mount 0 }}", Options: []string{"ro", "ro", "rbind"}}},
			disks: []vm.Disk{disk("l0", r.layer(1), true)},
			plan: []*api.Mount{lay(0), {Type: "bind", Source: g + "/layers/0", Target: groot,
				Options: []string{"ro", "ro", "rbind"}}},
		},
		{
			name: "ovl_mount_options pass through",
			mounts: []*types.Mount{mkfsM(img), erofsM(r.layer(1)), erofsM(r.layer(2)),
				{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
					"X-containerd.mkdir.path={{ mount 0 }}/upper:0755", "X-containerd.mkdir.path={{ mount 0 }}/work:0755",
					"workdir={{ mount 0 }}/work", "upperdir={{ mount 0 }}/upper", "lowerdir={{ overlay 1 2 }}",
					"index=off", "metacopy=off"}}},
			disks: []vm.Disk{disk("rw", img, false), disk("l1", r.layer(1), true), disk("l2", r.layer(2), true)},
			plan: []*api.Mount{&rw, lay(1), lay(2), {Type: "overlay", Source: "overlay", Target: groot, Mkdirs: mkdirs,
				Options: []string{"workdir=" + g + "/rw/work", "upperdir=" + g + "/rw/upper",
					"lowerdir=" + g + "/layers/1:" + g + "/layers/2", "index=off", "metacopy=off"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(img)
			plan, err := Prepare(context.Background(), testID, tc.mounts, Options{Disks: vm.MaxDisks})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(plan.Disks, tc.disks) {
				t.Errorf("disks\n got %+v\nwant %+v", plan.Disks, tc.disks)
			}
			if got, want := planString(plan.Mounts), planString(tc.plan); got != want {
				t.Errorf("plan\n got %s\nwant %s", got, want)
			}
			if plan.Root != groot || plan.Mounts[len(plan.Mounts)-1].Target != groot {
				t.Errorf("root %q, last target %q", plan.Root, plan.Mounts[len(plan.Mounts)-1].Target)
			}
			if len(plan.Exports) != 0 || len(plan.HostMounts) != 0 {
				t.Errorf("unexpected exports %v / host mounts %v", plan.Exports, plan.HostMounts)
			}
			spec := vm.Spec{VCPUs: 1, MemoryMiB: 256, BootDisk: "/b", AgentSocket: "/a", ConsoleLog: "/c", Disks: plan.Disks}
			if err := spec.Validate(); err != nil {
				t.Errorf("vm spec with these disks: %v", err)
			}
			if strings.HasPrefix(tc.mounts[0].Type, "mkfs/") {
				if err := checkExtImage(img); err != nil {
					t.Errorf("upper image: %v", err)
				}
				if want := []string{img}; !reflect.DeepEqual(plan.Created, want) {
					t.Errorf("created %v, want %v", plan.Created, want)
				}
			}
		})
	}
}

func planString(ms []*api.Mount) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString("\n  {" + m.Type + " " + m.Source + " " + m.Target + " [" + strings.Join(m.Options, ",") +
			"] mkdirs[" + strings.Join(m.Mkdirs, ",") + "]}")
	}
	return b.String()
}

func TestPrepareHostShapes(t *testing.T) {
	host := t.TempDir()
	bundleRootfs := filepath.Join(t.TempDir(), "rootfs")
	for _, tc := range []struct {
		name  string
		mount *types.Mount
		ro    bool
	}{
		{"overlayfs snapshotter", &types.Mount{Type: "overlay", Source: "overlay", Options: []string{
			"index=off", "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs"}}, false},
		{"overlayfs snapshotter, view", &types.Mount{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=/s/2/fs:/s/1/fs"}}, true},
		{"bind, one layer", &types.Mount{Type: "bind", Source: host, Options: []string{"ro", "rbind"}}, true},
		{"bind, no parent", &types.Mount{Type: "bind", Source: host, Options: []string{"rw", "rbind"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Prepare(context.Background(), testID, []*types.Mount{tc.mount}, Options{HostRootfs: bundleRootfs})
			if err != nil {
				t.Fatal(err)
			}
			mode := "rw"
			if tc.ro {
				mode = "ro"
			}
			wantExports := []share.Export{{Name: "root", Source: bundleRootfs, Dir: true, Recursive: true, ReadOnly: tc.ro, Own: true}}
			if !reflect.DeepEqual(plan.Exports, wantExports) {
				t.Errorf("exports %+v, want %+v", plan.Exports, wantExports)
			}
			want := planString([]*api.Mount{{Type: "bind", Source: "/run/msb/share/" + testID + "/root", Target: groot, Options: []string{"rbind", mode}}})
			if got := planString(plan.Mounts); got != want {
				t.Errorf("plan\n got %s\nwant %s", got, want)
			}
			if len(plan.Disks) != 0 || plan.HostRootfs != bundleRootfs || len(plan.HostMounts) != 1 ||
				plan.HostMounts[0].Type != tc.mount.Type || !reflect.DeepEqual(plan.HostMounts[0].Options, tc.mount.Options) {
				t.Errorf("plan %+v", plan)
			}
		})
	}
	if _, err := Prepare(context.Background(), testID, []*types.Mount{{Type: "bind", Source: host, Options: []string{"rbind"}}}, Options{}); !errdefs.IsInvalidArgument(err) ||
		!strings.Contains(err.Error(), "HostRootfs") {
		t.Errorf("host root without HostRootfs: %v", err)
	}
}

func TestPrepareErrors(t *testing.T) {
	r := newSnapDir(t, 1, 2, 7)
	img := r.path("7", "rwlayer.img")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		id     string
		mounts []*types.Mount
		kind   func(error) bool
		want   string
	}{
		{"no mounts", testID, nil, errdefs.IsInvalidArgument, "no rootfs mounts"},
		{"nil mount", testID, []*types.Mount{nil}, errdefs.IsInvalidArgument, "nil"},
		{"bad id", "../x", []*types.Mount{erofsM(r.layer(1))}, errdefs.IsInvalidArgument, "container id"},
		{"unknown type", testID, []*types.Mount{{Type: "btrfs", Source: "/dev/sda"}}, errdefs.IsNotImplemented, `mount type "btrfs" is not supported`},
		{"unknown transform", testID, []*types.Mount{{Type: "zap/overlay", Source: "overlay"}}, errdefs.IsNotImplemented, `unknown mount transform "zap"`},
		{"mount target", testID, []*types.Mount{{Type: "erofs", Source: r.layer(1), Target: "/x"}}, errdefs.IsNotImplemented, "target"},
		{
			"default (non-block) EROFS mode", testID,
			[]*types.Mount{erofsM(r.layer(2)), erofsM(r.layer(1)), {Type: "format/mkdir/overlay", Source: "overlay",
				Options: []string{"workdir=" + r.path("7", "work"), "upperdir=" + r.path("7", "fs"), "lowerdir={{ overlay 0 1 }}"}}},
			errdefs.IsNotImplemented, "set default_size",
		},
		{
			"template without format", testID,
			[]*types.Mount{mkfsM(img), erofsM(r.layer(1)), {Type: "mkdir/overlay", Source: "overlay",
				Options: []string{"upperdir={{ mount 0 }}/upper", "workdir={{ mount 0 }}/work", "lowerdir={{ mount 1 }}"}}},
			errdefs.IsInvalidArgument, "no format transform",
		},
		{
			"template index out of range", testID,
			[]*types.Mount{mkfsM(img), erofsM(r.layer(1)), blockOverlay("{{ overlay 1 2 }}")},
			errdefs.IsInvalidArgument, "invalid range: 1-2, has 2 active mounts",
		},
		{
			"template names a host source", testID,
			[]*types.Mount{erofsM(r.layer(1)), {Type: "format/bind", Source: "{{ source 0 }}", Options: []string{"rbind"}}},
			errdefs.IsInvalidArgument, "host path",
		},
		{"dm-verity", testID, []*types.Mount{erofsM(r.layer(1), "X-containerd.dmverity="+r.layer(1)+".dmverity")}, errdefs.IsNotImplemented, "dmverity_mode = 'off'"},
		{"unknown containerd option", testID, []*types.Mount{erofsM(r.layer(1), "X-containerd.frob=1")}, errdefs.IsNotImplemented, "unknown containerd option"},
		{"unknown erofs option", testID, []*types.Mount{erofsM(r.layer(1), "frob")}, errdefs.IsNotImplemented, `unknown EROFS option "frob"`},
		{"rw erofs", testID, []*types.Mount{{Type: "erofs", Source: r.layer(1), Options: []string{"rw"}}}, errdefs.IsInvalidArgument, "read-only"},
		{"missing blob", testID, []*types.Mount{erofsM(r.path("9", "layer.erofs"))}, errdefs.IsNotFound, "EROFS image"},
		{"missing device blob", testID, []*types.Mount{erofsM(r.layer(1), "device="+r.path("9", "layer.erofs"))}, errdefs.IsNotFound, "device blob"},
		{
			"idmapped overlay without gidmap", testID,
			[]*types.Mount{mkfsM(img), erofsM(r.layer(1)), blockOverlayWith("{{ mount 1 }}", "uidmap=0:1000:65536")},
			errdefs.IsInvalidArgument, "both uidmap and gidmap",
		},
		{
			"unknown overlay option", testID,
			[]*types.Mount{mkfsM(img), erofsM(r.layer(1)), blockOverlayWith("{{ mount 1 }}", "frob=1")},
			errdefs.IsNotImplemented, `unknown overlay option "frob=1"`,
		},
		{
			"mkfs without size", testID,
			[]*types.Mount{{Type: "mkfs/ext4", Source: img, Options: []string{"rw"}}, erofsM(r.layer(1)), blockOverlay("{{ mount 1 }}")},
			errdefs.IsInvalidArgument, "mkfs.size",
		},
		{
			"mkfs xfs", testID,
			[]*types.Mount{{Type: "mkfs/ext4", Source: img, Options: []string{"X-containerd.mkfs.fs=xfs", "X-containerd.mkfs.size=64MiB"}}, erofsM(r.layer(1)), blockOverlay("{{ mount 1 }}")},
			errdefs.IsNotImplemented, `"xfs" is not supported`,
		},
		{
			"mkdir owner", testID,
			[]*types.Mount{mkfsM(img), {Type: "format/mkdir/bind", Source: "{{ mount 0 }}/upper", Options: []string{
				"X-containerd.mkdir.path={{ mount 0 }}/upper:0755:1000:1000", "rbind"}}},
			errdefs.IsInvalidArgument, "owner 1000:1000",
		},
		{
			"overlay not last", testID,
			[]*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b"}}, erofsM(r.layer(1))},
			errdefs.IsNotImplemented, "only the last mount",
		},
		{
			"unused layer", testID,
			[]*types.Mount{mkfsM(img), erofsM(r.layer(1)), erofsM(r.layer(2)), blockOverlay("{{ mount 1 }}")},
			errdefs.IsNotImplemented, "not used by the root",
		},
		{
			"host lower next to disks", testID,
			[]*types.Mount{mkfsM(img), erofsM(r.layer(1)), blockOverlay("{{ mount 1 }}:/var/lib/x")},
			errdefs.IsNotImplemented, "host directory",
		},
		{
			"two ext4 images", testID,
			[]*types.Mount{mkfsM(img), mkfsM(img + "2"), erofsM(r.layer(1)), blockOverlay("{{ mount 2 }}")},
			errdefs.IsNotImplemented, "second ext4",
		},
		{
			"bad mkfs size", testID,
			[]*types.Mount{{Type: "mkfs/ext4", Source: img, Options: []string{"X-containerd.mkfs.size=lots"}}, erofsM(r.layer(1)), blockOverlay("{{ mount 1 }}")},
			errdefs.IsInvalidArgument, `invalid size "lots"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Prepare(ctx, tc.id, tc.mounts, Options{})
			if err == nil || !tc.kind(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a %q error", err, tc.want)
			}
			if _, serr := os.Stat(img); serr == nil {
				t.Errorf("a failed Prepare left %s behind", img)
			}
		})
	}
}

func blockOverlayWith(lower string, extra ...string) *types.Mount {
	m := blockOverlay(lower)
	m.Options = append(m.Options, extra...)
	return m
}

// TestPrepareDiskBudget: what has no disk is exported as a file, which
// the guest mounts itself (EROFS file-backed, ext4 on a loop device).
func TestPrepareDiskBudget(t *testing.T) {
	r := newSnapDir(t, 1, 2, 3, 7)
	img := r.path("7", "rwlayer.img")
	mounts := []*types.Mount{mkfsM(img), erofsM(r.layer(3)), erofsM(r.layer(2)), erofsM(r.layer(1)), blockOverlay("{{ overlay 1 3 }}")}
	pre := DefaultSerialPrefix(testID)
	f := "/run/msb/share/" + testID
	for _, tc := range []struct {
		disks   int
		serials []string
		exports []share.Export
		plan    string
	}{
		{0, nil, []share.Export{{Name: "rw", Source: img}, {Name: "l1", Source: r.layer(3), ReadOnly: true},
			{Name: "l2", Source: r.layer(2), ReadOnly: true}, {Name: "l3", Source: r.layer(1), ReadOnly: true}},
			"ext4 " + f + "/rw [rw,loop,nobarrier]|erofs " + f + "/l1 [ro]|erofs " + f + "/l2 [ro]|erofs " + f + "/l3 [ro]"},
		{2, []string{pre + "-rw", pre + "-l1"}, []share.Export{{Name: "l2", Source: r.layer(2), ReadOnly: true},
			{Name: "l3", Source: r.layer(1), ReadOnly: true}},
			"ext4 disk:" + pre + "-rw [rw]|erofs disk:" + pre + "-l1 [ro]|erofs " + f + "/l2 [ro]|erofs " + f + "/l3 [ro]"},
		{6, []string{pre + "-rw", pre + "-l1", pre + "-l2", pre + "-l3"}, nil,
			"ext4 disk:" + pre + "-rw [rw]|erofs disk:" + pre + "-l1 [ro]|erofs disk:" + pre + "-l2 [ro]|erofs disk:" + pre + "-l3 [ro]"},
	} {
		plan, err := Prepare(context.Background(), testID, mounts, Options{Disks: tc.disks})
		if err != nil {
			t.Fatalf("budget %d: %v", tc.disks, err)
		}
		var serials, steps []string
		for _, d := range plan.Disks {
			serials = append(serials, d.ID)
		}
		for _, m := range plan.Mounts[:len(plan.Mounts)-1] {
			steps = append(steps, m.Type+" "+m.Source+" ["+strings.Join(m.Options, ",")+"]")
		}
		if !reflect.DeepEqual(serials, tc.serials) || !reflect.DeepEqual(plan.Exports, tc.exports) || strings.Join(steps, "|") != tc.plan {
			t.Errorf("budget %d:\n disks %v, want %v\n exports %+v\n want    %+v\n plan %s\n want %s",
				tc.disks, serials, tc.serials, plan.Exports, tc.exports, strings.Join(steps, "|"), tc.plan)
		}
		for _, e := range plan.Exports {
			if err := e.Validate(); err != nil {
				t.Errorf("budget %d: %v", tc.disks, err)
			}
		}
	}
	if _, err := Prepare(context.Background(), testID, mounts, Options{Disks: -1}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("negative budget: %v", err)
	}
}

// TestChooseDisks: the upper first, then whole layers from the top while
// they fit; a layer never straddles disks and files.
func TestChooseDisks(t *testing.T) {
	for _, tc := range []struct {
		budget int
		costs  []int
		want   []bool
	}{
		{5, []int{1, 1, 1, 1}, []bool{true, true, true, true}},
		{5, []int{1, 1, 1, 1, 1}, []bool{true, true, true, true, false}},
		{5, []int{6}, []bool{false}},
		{5, []int{1, 4}, []bool{true, false}},
		{5, []int{3, 1, 1}, []bool{true, true, false}},
		{0, []int{1}, []bool{false}},
	} {
		b := &builder{opts: Options{Disks: tc.budget}, upper: &upperMount{}}
		for i, c := range tc.costs {
			b.order = append(b.order, &unit{m: &mnt{index: i + 1}, devices: make([]string, c-1)})
		}
		b.chooseDisks()
		var got []bool
		for _, u := range b.order {
			got = append(got, u.onDisk)
		}
		if !reflect.DeepEqual(got, tc.want) || b.upperOnDisk != (tc.budget > 0) {
			t.Errorf("budget %d costs %v: layers on disk %v (upper %v), want %v", tc.budget, tc.costs, got, b.upperOnDisk, tc.want)
		}
	}
}

func TestResolveTemplate(t *testing.T) {
	pts := []string{"/m/0", "/m/1", "/m/2", "/m/3"}
	for _, tc := range []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"{{ mount 0 }}/upper", "/m/0/upper", ""},
		{"lowerdir={{ overlay 1 3 }}", "lowerdir=/m/1:/m/2:/m/3", ""},
		{"lowerdir={{ overlay 3 1 }}", "lowerdir=/m/3:/m/2:/m/1", ""},
		{"{{ overlay 2 2 }}", "/m/2", ""},
		{"{{ overlay 0 3 }}", "/m/0:/m/1:/m/2:/m/3", ""},
		{"{{mount 3}}", "/m/3", ""},
		{"{{ mount 4 }}", "", "index out of bounds: 4, has 4 active mounts"},
		{"{{ mount -1 }}", "", "index out of bounds: -1"},
		{"{{ overlay 1 4 }}", "", "invalid range: 1-4, has 4 active mounts"},
		{"{{ overlay 4 1 }}", "", "invalid range: 4-1, has 4 active mounts"},
		{"{{ overlay -1 2 }}", "", "invalid range: -1-2"},
		{"{{ overlay 2 -1 }}", "", "invalid range: 2--1"},
		{"{{ source 0 }}", "", "host path"},
		{"{{ target 0 }}", "", "host path"},
		{"{{ mount 0 ", "", "template"},
		{"{{ bogus 0 }}", "", "not defined"},
	} {
		got, err := resolveTemplate(tc.in, pts)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"67108864": 67108864, "64MiB": 64 << 20, "64m": 64 << 20, "64MB": 64 << 20, "1GiB": 1 << 30,
		"1g": 1 << 30, "512k": 512 << 10, "1.5g": 3 << 29, "2 GiB": 2 << 30, "1TB": 1 << 40,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1", "1x", "1e9", "inf", "NaN", "0x10"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
}

func TestMkdirEntry(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":           "/a/b:0700",
		"/a/b:0755":      "/a/b:0755",
		"/a/./b/:755":    "/a/b:0755",
		"/a:1777":        "/a:1777",
		"/a:0755:0:0":    "/a:0755",
		"relative:0755":  "",
		"/a:999":         "",
		"/a:0755:1:1":    "",
		"/a:0755:0":      "",
		"/a:0755:0:0:xx": "",
	} {
		got, err := mkdirEntry(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: got %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSerialPrefix(t *testing.T) {
	r := newSnapDir(t, 1)
	m := []*types.Mount{erofsM(r.layer(1))}
	plan, err := Prepare(context.Background(), testID, m, Options{Disks: 1, SerialPrefix: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Disks[0].ID != "c1-l0" || plan.Mounts[0].Source != "disk:c1-l0" {
		t.Errorf("serial %q, source %q", plan.Disks[0].ID, plan.Mounts[0].Source)
	}
	for _, bad := range []string{"-x", "has space", "abcdefghijkl"} {
		if _, err := Prepare(context.Background(), testID, m, Options{SerialPrefix: bad}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("prefix %q: %v", bad, err)
		}
	}
	// Long container IDs still make short serials.
	long := strings.Repeat("a", 64)
	plan, err = Prepare(context.Background(), long, m, Options{Disks: 1})
	if err != nil {
		t.Fatal(err)
	}
	if id := plan.Disks[0].ID; len(id) > 20 || id == vm.BootDiskID {
		t.Errorf("serial %q", id)
	}
	if plan.Root != "/run/msb/c/"+long+"/rootfs" {
		t.Errorf("root %q", plan.Root)
	}
}
