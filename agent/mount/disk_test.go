package mount

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeSys builds a /sys/block with the given disk → serial entries.
func fakeSys(t *testing.T, disks map[string]string) Disks {
	t.Helper()
	root := t.TempDir()
	d := Disks{SysBlock: filepath.Join(root, "sys/block"), Dev: "/dev", ByID: filepath.Join(root, "by-id")}
	for name, serial := range disks {
		dir := filepath.Join(d.SysBlock, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if serial != "" {
			if err := os.WriteFile(filepath.Join(dir, "serial"), []byte(serial), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

func TestFindDisk(t *testing.T) {
	d := fakeSys(t, map[string]string{
		"vda": "msb-boot\n", "vdb": "layer0\n", "vdc": "rwlayer\x00\x00", "vdd": "", "loop0": "layer9\n",
	})
	for serial, want := range map[string]string{"msb-boot": "/dev/vda", "layer0": "/dev/vdb", "rwlayer": "/dev/vdc"} {
		got, err := d.Find(serial)
		if err != nil || got != want {
			t.Errorf("Find(%q) = %q, %v; want %q", serial, got, err, want)
		}
	}
	if _, err := d.Find("layer9"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a non-virtio disk matched: %v", err)
	}
	if _, err := d.Find(""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty serial: %v", err)
	}
}

func TestFindDiskByIDFallback(t *testing.T) {
	d := fakeSys(t, map[string]string{"vda": "msb-boot"})
	if err := os.MkdirAll(d.ByID, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(d.ByID, "virtio-data1")
	if err := os.WriteFile(link, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Find("data1"); err != nil || got != link {
		t.Fatalf("Find(data1) = %q, %v", got, err)
	}
}

func TestResolve(t *testing.T) {
	d := fakeSys(t, map[string]string{"vdb": "l1", "vdc": "l2"})
	if got, err := d.Resolve("disk:l2"); err != nil || got != "/dev/vdc" {
		t.Fatalf("Resolve(disk:l2) = %q, %v", got, err)
	}
	if got, err := d.Resolve("overlay"); err != nil || got != "overlay" {
		t.Fatalf("Resolve(overlay) = %q, %v", got, err)
	}
	data, err := d.ResolveData([]string{"device=disk:l1", "device=/dev/vdz", "noacl"})
	if err != nil || !reflect.DeepEqual(data, []string{"device=/dev/vdb", "device=/dev/vdz", "noacl"}) {
		t.Fatalf("ResolveData = %q, %v", data, err)
	}
	if _, err := d.ResolveData([]string{"device=disk:nope"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unknown device serial: %v", err)
	}
}
