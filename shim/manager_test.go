package shim

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// containerd hands the snapshotter's mounts to the shim untouched only for
// exactly this claim (shared notes, containerd-erofs §4): with less, the
// host would mount every EROFS layer itself.
func TestMountCapabilitiesClaim(t *testing.T) {
	c := MountCapabilities()
	if !slices.Equal(c.Types, []string{"erofs"}) {
		t.Errorf("types %v", c.Types)
	}
	for _, tr := range []string{"format", "mkdir", "mkfs"} {
		if !slices.Contains(c.Transforms, tr) {
			t.Errorf("transform %q not claimed: %v", tr, c.Transforms)
		}
	}
}

func TestGroupID(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// The sandbox API's bundle has no spec: the sandbox is its own group.
	if g, err := groupID("sb1"); err != nil || g != "sb1" {
		t.Fatalf("sandbox bundle: %q %v", g, err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}`)
	if g, err := groupID("c1"); err != nil || g != "pod1" {
		t.Fatalf("pod member: %q %v", g, err)
	}
	write(`{}`)
	if g, err := groupID("c1"); err != nil || g != "c1" {
		t.Fatalf("lone container: %q %v", g, err)
	}
	write(`{"annotations":`)
	if _, err := groupID("c1"); err == nil {
		t.Fatal("broken config.json accepted")
	}
}
