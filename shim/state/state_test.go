package state

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestWriteReadCleanup(t *testing.T) {
	bundle := t.TempDir()
	if _, err := Read(bundle); !errdefs.IsNotFound(err) {
		t.Fatalf("empty bundle: %v", err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	// A pid that is not ours (this test's own) must never be killed.
	if err := Write(bundle, &State{VMMPid: os.Getpid(), RunDir: run}); err != nil {
		t.Fatal(err)
	}
	st, err := Read(bundle)
	if err != nil || st.VMMPid != os.Getpid() || st.RunDir != run {
		t.Fatalf("read back %+v, %v", st, err)
	}
	if err := st.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Errorf("run dir left: %v", err)
	}
	if _, err := Read(bundle); !errdefs.IsNotFound(err) {
		t.Errorf("state left: %v", err)
	}
}
