package rootfs

import (
	"context"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"

	"github.com/msb-runtime/msb/share"
)

// FuzzPrepare: whatever mounts containerd hands over, Prepare either
// refuses them or returns a plan whose disks and exports are only the
// images the mounts named (never a directory, never another path), whose
// guest mounts stay in the container's guest directory and end at its
// root, and whose disks fit the budget.
func FuzzPrepare(f *testing.F) {
	r := newSnapDir(f, 1, 2, 3)
	img := r.path("3", "rwlayer.img")
	images := []string{r.layer(1), r.layer(2), r.layer(3), img}
	sources := append(slices.Clone(images), "overlay", "{{ mount 0 }}/upper", "/etc", string(r), r.path("1"), "{{ source 1 }}")
	types_ := []string{"erofs", "mkfs/ext4", "ext4", "format/mkdir/overlay", "format/bind", "overlay", "bind", "format/erofs"}
	opts := []string{"ro", "rw", "loop", "X-containerd.mkfs.fs=ext4", "X-containerd.mkfs.size=16777216",
		"lowerdir={{ mount 1 }}:{{ mount 2 }}", "lowerdir={{ overlay 1 2 }}", "upperdir={{ mount 0 }}/upper",
		"workdir={{ mount 0 }}/work", "X-containerd.mkdir.path={{ mount 0 }}/upper:0755", "device=" + r.layer(2),
		"lowerdir=/etc:/usr", "uidmap=0:1000:65536", "gidmap=0:1000:65536", "index=off", "{{ mount 9 }}"}
	// The EROFS snapshotter's shape: a writable layer, two layers, the
	// overlay over them.
	f.Add([]byte{1, 3, 0x10, 0, 0, 0, 1, 0, 0, 1, 1, 0, 3, 4, 0xA0, 0x03}, uint8(6))
	f.Add([]byte{1, 3, 0x10, 0, 0, 0, 1, 0, 0, 1, 1, 0, 3, 4, 0xA0, 0x03}, uint8(1))
	f.Add([]byte{0, 0, 1, 0, 0, 1, 1, 0, 6, 5, 0, 0}, uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, disks uint8) {
		var ms []*types.Mount
		for i := 0; i+3 < len(in) && len(ms) < 8; i += 4 {
			m := &types.Mount{Type: types_[int(in[i])%len(types_)], Source: sources[int(in[i+1])%len(sources)]}
			for b := 0; b < 16; b++ {
				if (int(in[i+2])|int(in[i+3])<<8)&(1<<b) != 0 {
					m.Options = append(m.Options, opts[b%len(opts)])
				}
			}
			ms = append(ms, m)
		}
		budget := int(disks % 8)
		p, err := Prepare(context.Background(), testID, ms, Options{Disks: budget, HostRootfs: "/b/rootfs"})
		if err != nil {
			return
		}
		checkPlan(t, p, images, budget)
	})
}

func checkPlan(t *testing.T, p *Plan, images []string, budget int) {
	t.Helper()
	if len(p.Disks) > budget {
		t.Fatalf("%d disks, budget %d", len(p.Disks), budget)
	}
	for _, d := range p.Disks {
		if !slices.Contains(images, d.Path) {
			t.Fatalf("disk %+v is not an image the mounts named", d)
		}
	}
	for _, e := range p.Exports {
		if e.Validate() != nil || !slices.Contains(images, e.Source) && !(e.Own && e.Source == "/b/rootfs") {
			t.Fatalf("export %+v is not an image the mounts named", e)
		}
	}
	guest := GuestDir(testID) + "/"
	for _, m := range p.Mounts {
		if !strings.HasPrefix(path.Clean(m.Target)+"/", guest) {
			t.Fatalf("guest mount target %s is outside %s", m.Target, guest)
		}
		for _, src := range append([]string{m.Source}, m.Options...) {
			if strings.Contains(src, share.GuestDir) && !strings.Contains(src, share.GuestDir+"/"+testID+"/") {
				t.Fatalf("guest mount %+v names another container's export", m)
			}
		}
	}
	if last := p.Mounts[len(p.Mounts)-1]; last.Target != RootPath(testID) {
		t.Fatalf("plan ends at %s", last.Target)
	}
}
