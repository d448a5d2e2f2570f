// Package journal is the undo journal of a sandbox: every change the shim
// makes on the host (a directory, a mount, a network namespace, a tap, a
// host cgroup, the VMM) is appended to a journal file before it is made,
// and undone in reverse order: when a container or the VM goes, on every
// error path, and by `shim delete` after the shim died. One mechanism
// instead of cleanup code per path.
//
// A VM's journal lives beside its run directory; a container's in its
// bundle, naming the VM's journal, so that `shim delete` with any bundle of
// a dead shim undoes the VM too.
package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// FileName is a container's journal in its bundle.
const FileName = "msb-journal.json"

// Journal is one journal file and what it records.
type Journal struct {
	path string

	mu  sync.Mutex
	rec record
}

// record is the file's content.
type record struct {
	// Owner is the shim that makes the changes. containerd runs "shim
	// delete" when it closes its connection for a task, also while the
	// shim still runs the pod's other containers: that shim then owns the
	// cleanup, and the journal is left alone.
	Owner Owner `json:"owner"`
	// VM is the journal of the VM a container's journal belongs to.
	VM      string  `json:"vm,omitempty"`
	Entries []Entry `json:"entries"`
}

// Create starts an empty journal at path, owned by this process, naming
// vm's journal (empty for a VM's own).
func Create(path, vm string) (*Journal, error) {
	owner, err := self()
	if err != nil {
		return nil, err
	}
	j := &Journal{path: path, rec: record{Owner: owner, VM: vm}}
	if err := j.write(); err != nil {
		return nil, err
	}
	return j, nil
}

// Open reads the journal at path: errdefs.ErrNotFound when there is none.
func Open(path string) (*Journal, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no journal at %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	j := &Journal{path: path}
	if err := json.Unmarshal(b, &j.rec); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return j, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Record appends entries and stores them: call it before making the
// changes they undo.
func (j *Journal) Record(es ...Entry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rec.Entries = append(j.rec.Entries, es...)
	return j.write()
}

// Entries returns what the journal records, oldest first.
func (j *Journal) Entries() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Entry(nil), j.rec.Entries...)
}

func (j *Journal) write() error {
	b, err := json.Marshal(&j.rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(j.path), "."+filepath.Base(j.path))
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

// Undo undoes every entry, newest first, and removes the journal. It goes
// on after a failed entry (each is undone as far as it can be) and returns
// every error.
func (j *Journal) Undo(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	for i := len(j.rec.Entries) - 1; i >= 0; i-- {
		e := j.rec.Entries[i]
		if err := e.undo(); err != nil {
			log.G(ctx).WithError(err).WithField("entry", e.String()).Warn("undo")
			errs = append(errs, err)
		}
	}
	j.rec.Entries = nil
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Recover is `shim delete` after the owner died: it undoes the journal and
// then the VM's it names. While the owner runs, it does nothing: the
// owner undoes its changes itself.
func (j *Journal) Recover(ctx context.Context) error {
	if j.OwnerRunning() {
		log.G(ctx).WithField("shim_pid", j.rec.Owner.Pid).Debug("the shim owning the journal still runs")
		return nil
	}
	err := j.Undo(ctx)
	if j.rec.VM == "" {
		return err
	}
	vm, verr := Open(j.rec.VM)
	if errdefs.IsNotFound(verr) {
		return err // undone already, by another container's delete
	}
	if verr != nil {
		return errors.Join(err, verr)
	}
	return errors.Join(err, vm.Recover(ctx))
}

// OwnerRunning says whether the shim that owns the journal is another
// process that still runs.
func (j *Journal) OwnerRunning() bool { return j.rec.Owner.running() }

// VMMPid is the VMM's pid that the journal, or its VM's, records; 0 when
// none does.
func (j *Journal) VMMPid() int {
	j.mu.Lock()
	vm := j.rec.VM
	for _, e := range j.rec.Entries {
		if e.Kind == KindVMM && e.Pid > 0 {
			j.mu.Unlock()
			return e.Pid
		}
	}
	j.mu.Unlock()
	if vm == "" {
		return 0
	}
	v, err := Open(vm)
	if err != nil {
		return 0
	}
	return v.VMMPid()
}
