package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/shim/journal"
)

// A boot that fails once the host is prepared (the VMM cannot start)
// leaves nothing: the share directory with its mounts, the run directory
// and the journals are undone in reverse.
func TestBootFailureUndoesEverything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the share directory is a tmpfs: needs root")
	}
	inMountNS(t, func() { testBootFailure(t) })
}

func testBootFailure(t *testing.T) {
	base := t.TempDir()
	s := New()
	s.runRoot, s.shareRoot = filepath.Join(base, "vm"), filepath.Join(base, "share")
	bundle := t.TempDir()
	cfg := defaultConfig()
	cfg.Backend, cfg.QEMU = "qemu", filepath.Join(base, "no-qemu")
	err := s.Boot(context.Background(), &BootSpec{Bundle: bundle, Config: cfg, Pod: true})
	if err == nil || !strings.Contains(err.Error(), "start VM") {
		t.Fatalf("a boot without a VMM: %v", err)
	}
	for _, d := range []string{s.runRoot, s.shareRoot} {
		ents, _ := os.ReadDir(d)
		if len(ents) > 0 {
			t.Errorf("left in %s: %v", d, ents)
		}
	}
	if _, err := journal.Open(filepath.Join(bundle, journal.FileName)); !errdefs.IsNotFound(err) {
		t.Errorf("the bundle's journal is left: %v", err)
	}
	if err := s.Boot(context.Background(), &BootSpec{Bundle: bundle, Config: cfg}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("a second boot: %v", err)
	}
}

// inMountNS runs fn on a thread in a private mount namespace of its own, so
// that nothing the test mounts reaches the host's; the thread is dropped
// afterwards.
func inMountNS(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Errorf("make / private: %v", err)
			return
		}
		fn()
	}()
	<-done
}
