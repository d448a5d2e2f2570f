package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/msb-runtime/msb/internal/testns"
	"github.com/msb-runtime/msb/shim/journal"
)

// A boot that fails once the host is prepared (the VMM cannot start)
// leaves nothing: the share directory with its mounts, the run directory
// and the journals are undone in reverse.
func TestBootFailureUndoesEverything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the share directory is a tmpfs: needs root")
	}
	testns.InMountNS(t, func() { testBootFailure(t) })
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

// The pod files of a sandbox-API pod: each in a tmpfs of its own (the
// guest may write them, not fill the host's /run), undone by the journal.
func TestPodFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the pod files are on tmpfs: needs root")
	}
	testns.InMountNS(t, func() {
		base := t.TempDir()
		s := New()
		s.runDir = filepath.Join(base, "run")
		if err := os.Mkdir(s.runDir, 0o700); err != nil {
			t.Fatal(err)
		}
		j, err := journal.Create(filepath.Join(base, "j"), "")
		if err != nil {
			t.Fatal(err)
		}
		s.journal = j
		exps, err := s.writePodFiles(&PodFiles{ID: "p", Hostname: "h\n", Hosts: "127.0.0.1 localhost\n", ResolvConf: "nameserver 10.0.0.1\n", ShmSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, e := range exps {
			if !e.Dir {
				b, _ := os.ReadFile(e.Source)
				got[e.Name] = string(b)
			}
			if err := e.Validate(); err != nil {
				t.Error(err)
			}
		}
		if got[PodHostname] != "h\n" || got[PodResolvConf] != "nameserver 10.0.0.1\n" || len(exps) != 4 {
			t.Fatalf("pod files %v (%d exports)", got, len(exps))
		}
		big := make([]byte, 2*podFilesSize)
		if err := os.WriteFile(filepath.Join(s.runDir, "pod", PodHosts), big, 0o644); err == nil {
			t.Error("a pod file grew past its tmpfs")
		}
		if err := j.Undo(context.Background()); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), s.runDir) {
			t.Fatal("pod tmpfs left mounted")
		}
	})
}
