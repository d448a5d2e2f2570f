package journal

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/msb-runtime/msb/vm"
)

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// Entries are undone newest first: a directory made inside another is
// removed before it, the run directory with its content, and the journal
// file goes last.
func TestUndoInReverse(t *testing.T) {
	base := t.TempDir()
	j, err := Create(filepath.Join(base, "j.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	run, a, b := filepath.Join(base, "run"), filepath.Join(base, "a"), filepath.Join(base, "a", "b")
	for _, step := range []struct {
		e  Entry
		do func() error
	}{
		{RunDir(run), func() error { return os.MkdirAll(filepath.Join(run, "sub"), 0o700) }},
		{Dir(a), func() error { return os.Mkdir(a, 0o700) }},
		{Dir(b), func() error { return os.Mkdir(b, 0o700) }},
	} {
		if err := j.Record(step.e); err != nil {
			t.Fatal(err)
		}
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
	}
	// What is stored is what a shim delete reads back.
	back, err := Open(j.Path())
	if err != nil || len(back.Entries()) != 3 || back.Entries()[2] != Dir(b) {
		t.Fatalf("read back %v, %v", back.Entries(), err)
	}
	if err := back.Undo(context.Background()); err != nil {
		t.Fatalf("undo: %v", err)
	}
	for _, p := range []string{run, a, j.Path()} {
		if exists(p) {
			t.Errorf("%s left", p)
		}
	}
	if _, err := Open(j.Path()); !errdefs.IsNotFound(err) {
		t.Errorf("open after undo: %v", err)
	}
}

// An entry that cannot be undone does not stop the others, and its error
// is returned; a directory is never removed with what is in it.
func TestUndoGoesOn(t *testing.T) {
	base := t.TempDir()
	j, err := Create(filepath.Join(base, "j.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	full, empty := filepath.Join(base, "full"), filepath.Join(base, "empty")
	for _, d := range []string{empty, full} {
		if err := j.Record(Dir(d)); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "host-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.Record(Entry{Kind: "bogus"}); err != nil {
		t.Fatal(err)
	}
	err = j.Undo(context.Background())
	if err == nil || exists(empty) || !exists(filepath.Join(full, "host-file")) {
		t.Fatalf("undo: %v; empty left %v, the file in full removed %v", err, exists(empty), !exists(filepath.Join(full, "host-file")))
	}
}

// startNaming starts a process whose command line names dir, as a VMM's
// names its run directory, and returns a channel closed when it is gone.
func startNaming(t *testing.T, dir string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do sleep 1; done", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	// Until it has exec'd, the child's command line is this test's.
	for deadline := time.Now().Add(5 * time.Second); !vm.NamesDir(cmd.Process.Pid, dir); {
		if time.Now().After(deadline) {
			t.Fatal("the child never showed the directory in its command line")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, done
}

// `shim delete` with a container's journal after its shim died undoes the
// container's entries and the VM's journal it names: a VMM whose pid was
// never recorded (the shim died during boot) is found by its run
// directory and killed; a pid that is not the VMM's (this test's own) is
// never killed.
func TestRecoverFollowsTheVM(t *testing.T) {
	base := t.TempDir()
	run := filepath.Join(base, "run")
	vmj, err := Create(run+".journal", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := vmj.Record(RunDir(run), VMM(run, 0), VMM(run, os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	_, vmmGone := startNaming(t, run)
	cj, err := Create(filepath.Join(base, FileName), vmj.Path())
	if err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(base, "export")
	if err := cj.Record(Dir(export)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(export, 0o700); err != nil {
		t.Fatal(err)
	}
	// Owned by this process: a shim delete run by the owner itself (a
	// pod's shim) is no other running owner.
	back, err := Open(cj.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Recover(context.Background()); err != nil {
		t.Fatalf("recover: %v", err)
	}
	select {
	case <-vmmGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the process naming the run directory was not killed")
	}
	for _, p := range []string{export, run, vmj.Path(), cj.Path()} {
		if exists(p) {
			t.Errorf("%s left", p)
		}
	}
}

// While the shim that owns a journal runs, a shim delete leaves it alone:
// the pod's other containers still use the VM.
func TestRecoverLeavesARunningOwner(t *testing.T) {
	if os.Getenv("MSB_TEST_SLEEP") != "" {
		time.Sleep(time.Minute) // the "owning shim" of the parent test
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecoverLeavesARunningOwner$")
	cmd.Env = append(os.Environ(), "MSB_TEST_SLEEP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	st, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, FileName)
	write := func(o Owner) {
		b, _ := json.Marshal(record{Owner: o, Entries: []Entry{Dir(dir)}})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(Owner{Pid: cmd.Process.Pid, Start: st.start})
	j, err := Open(path)
	if err != nil || !j.OwnerRunning() {
		t.Fatalf("the running owner is not seen: %v", err)
	}
	if err := j.Recover(context.Background()); err != nil || !exists(dir) || !exists(path) {
		t.Fatalf("recover with a running owner: %v; it undid the journal", err)
	}
	// The same pid started at another time is another process.
	write(Owner{Pid: cmd.Process.Pid, Start: st.start + 1})
	if j, _ := Open(path); j.OwnerRunning() {
		t.Error("a reused pid counts as the owner")
	}
	// Killed but not reaped yet: a zombie, which no longer runs the VM.
	write(Owner{Pid: cmd.Process.Pid, Start: st.start})
	_ = cmd.Process.Kill()
	for i := 0; i < 200; i++ {
		if s, err := readStat(cmd.Process.Pid); err == nil && s.state == 'Z' {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	j, _ = Open(path)
	if j.OwnerRunning() {
		t.Error("an owner that was killed (a zombie) still counts")
	}
	if err := j.Recover(context.Background()); err != nil || exists(dir) {
		t.Fatalf("recover after the owner died: %v; dir left %v", err, exists(dir))
	}
}
