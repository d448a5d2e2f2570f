package network

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
)

func hasTap(t *testing.T, path string) bool {
	t.Helper()
	var up, found bool
	if err := in(path, func() error {
		l, err := netlink.LinkByName(Tap)
		if err == nil {
			found, up = true, l.Attrs().RawFlags&0x1 != 0
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if found && !up {
		t.Errorf("tap in %s is down", path)
	}
	return found
}

// A warm VM's tap moves from its holding namespace into a pod's, up; the
// holding namespace can be pinned by its file alone.
func TestMoveTapAndPin(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	hold, pod, pin := filepath.Join(dir, "hold"), filepath.Join(dir, "pod"), filepath.Join(dir, "pin")
	for _, p := range []string{hold, pod} {
		if err := NewNamespace(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = RemoveNamespace(p) })
	}
	if err := AddTap(hold); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(hold)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.WriteFile(pin, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := Pin(f, pin); err != nil {
		t.Fatal(err)
	}
	if !hasTap(t, pin) {
		t.Fatal("the pin does not hold the namespace with the tap")
	}
	if err := RemoveNamespace(pin); err != nil {
		t.Fatal(err)
	}
	if err := MoveTap(f, pod); err != nil {
		t.Fatal(err)
	}
	if hasTap(t, hold) || !hasTap(t, pod) {
		t.Error("the tap did not move to the pod's namespace")
	}
	if err := DelTap(pod); err != nil {
		t.Fatal(err)
	}
}
