package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msb-runtime/msb/internal/testns"
	"github.com/msb-runtime/msb/pool"
)

// With the warm pool on but no pool serving, a sandbox boots cold: the
// boot goes on to start its own VM (here it fails for want of a VMM) and,
// failing, leaves nothing.
func TestWarmPoolMissingBootsCold(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the share directory is a tmpfs: needs root")
	}
	testns.InMountNS(t, func() {
		base := t.TempDir()
		cfg := defaultConfig()
		cfg.Backend, cfg.QEMU = "qemu", filepath.Join(base, "no-qemu")
		cfg.WarmPool = pool.Config{Count: 1, Socket: filepath.Join(base, "no-pool.sock")}
		s := New()
		s.runRoot, s.shareRoot = filepath.Join(base, "vm"), filepath.Join(base, "share")
		err := s.Boot(context.Background(), &BootSpec{Bundle: t.TempDir(), Config: cfg, Pod: true})
		if err == nil || !strings.Contains(err.Error(), "start VM") {
			t.Fatalf("a boot without a pool and without a VMM: %v, want the cold boot's error", err)
		}
		for _, d := range []string{s.runRoot, s.shareRoot} {
			if ents, _ := os.ReadDir(d); len(ents) > 0 {
				t.Errorf("left in %s: %v", d, ents)
			}
		}
	})
}
