package pool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/log"

	"github.com/msb-runtime/msb/shim/network"
	"github.com/msb-runtime/msb/shim/sharedir"
	"github.com/msb-runtime/msb/vm"
)

// A record names what one VM of the pool holds on the host. It is written
// before any of it is made, so that msb-pool, restarted after it died,
// destroys every VM it did not hand over (CleanStale): a VM in the pool
// lives in the pool's mount namespace, and cannot be handed over by
// another process. A claimed VM's record is marked before the pool lets go
// of it, and removed after: the claimant's bundle names it from then on.
type record struct {
	ID        string `json:"id"`
	RunDir    string `json:"run_dir"`
	ShareBase string `json:"share_base"`
	NetNS     string `json:"netns"`
	Cgroup    string `json:"cgroup,omitempty"`
	// Claimed: the VM is the claimant's; only the pool's emptied host
	// cgroup may be left to remove.
	Claimed bool `json:"claimed,omitempty"`
}

func recordDir() string { return filepath.Join(Root, "state") }

func (r *record) path() string { return filepath.Join(recordDir(), r.ID+".json") }

func (r *record) write() error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(recordDir(), 0o700); err != nil {
		return err
	}
	tmp := r.path() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("warm pool: write record: %w", err)
	}
	return os.Rename(tmp, r.path())
}

func (r *record) remove() error {
	if err := os.Remove(r.path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// cleanup destroys what the record names: the VM's processes (the VMM and
// its helpers name its run directory), host cgroup, network namespace,
// share and run directory; then the record. A claimed VM's is only its
// emptied cgroup.
func (r *record) cleanup() error {
	if r.Claimed {
		var err error
		if r.Cgroup != "" {
			err = vm.RemoveEmptyHostCgroup(r.Cgroup)
		}
		return errors.Join(err, r.remove())
	}
	var errs []error
	if r.RunDir != "" {
		vm.KillNaming(r.RunDir)
	}
	if r.Cgroup != "" {
		errs = append(errs, vm.RemoveHostCgroup(r.Cgroup))
	}
	if r.NetNS != "" {
		errs = append(errs, network.RemoveNamespace(r.NetNS))
	}
	if r.ShareBase != "" {
		errs = append(errs, sharedir.New(r.ShareBase).Destroy())
	}
	if r.RunDir != "" {
		errs = append(errs, os.RemoveAll(r.RunDir))
	}
	if err := errors.Join(errs...); err != nil {
		return err // the record stays for the next try
	}
	return r.remove()
}

// CleanStale destroys what the records of an earlier msb-pool name, before
// this one starts: VMs nobody claimed are killed, never adopted.
func CleanStale() error {
	ents, err := os.ReadDir(recordDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(recordDir(), e.Name())
		if !strings.HasSuffix(e.Name(), ".json") {
			_ = os.Remove(p) // a half-written record
			continue
		}
		b, err := os.ReadFile(p)
		var r record
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil || r.path() != p {
			errs = append(errs, fmt.Errorf("warm pool: record %s: %v", p, err))
			continue
		}
		log.L.WithField("vm", r.ID).WithField("claimed", r.Claimed).Info("warm pool: cleaning up after an earlier msb-pool")
		errs = append(errs, r.cleanup())
	}
	return errors.Join(errs...)
}
