//go:build vmtest

package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msb-runtime/msb/agent/api"
)

// A warm VM booted in one host cgroup is handed over and adopted into
// another: the agent answers the adopter on the connection the booting
// side opened, the VMM and its helper run in the adopter's cgroup, the
// booting side's cgroup is gone, and the adopter's Shutdown ends the VM,
// leaving nothing.
func TestWarmHandover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("VM tests need root")
	}
	dir := t.TempDir()
	pooled := fmt.Sprintf("/msb-vmtest/%swarm%d", CgroupPrefix, os.Getpid())
	adopted := fmt.Sprintf("/msb-vmtest/%sadopt%d", CgroupPrefix, os.Getpid())
	t.Cleanup(func() {
		_ = RemoveHostCgroup(pooled)
		_ = RemoveHostCgroup(adopted)
	})
	shared := filepath.Join(dir, "share")
	must(t, os.Mkdir(shared, 0o755))
	spec := baseSpec(t, dir)
	spec.Shares = []Share{{Tag: "msb", Path: shared}}
	spec.KernelArgs = []string{"msb.share=msb"}
	spec.Host = HostLimits{Cgroup: pooled}
	opts := testOptions(BackendAuto)
	opts.DieWithParent = false // the VMM is started from a pool's thread, adopted by another process
	ctx := context.Background()
	w, err := Boot(ctx, opts, spec)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(w.Kill)
	if got := cgroupOf(t, w.Pid()); got != pooled {
		t.Fatalf("the warm VM runs in %s, want %s", got, pooled)
	}
	h, err := w.Handover()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Pids) != 2 {
		t.Fatalf("handover of %v: want the VMM and virtiofsd", h.Pids)
	}
	spec.Host = HostLimits{Cgroup: adopted, CPUQuota: 50000, CPUPeriod: 100000}
	v, err := Adopt(ctx, opts, spec, h)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	must(t, w.Release())
	for _, pid := range v.proc.pids() {
		if got := cgroupOf(t, pid); got != adopted {
			t.Errorf("pid %d runs in %s after adoption, want %s", pid, got, adopted)
		}
	}
	if _, err := os.Stat(filepath.Join(v2Root, "memory", pooled)); !os.IsNotExist(err) {
		if _, err2 := os.Stat(filepath.Join(v2Root, pooled)); !os.IsNotExist(err2) {
			t.Errorf("the warm VM's cgroup %s is left after Release", pooled)
		}
	}
	if _, err := v.Agent.Ping(ctx, &api.PingRequest{}); err != nil {
		t.Fatalf("ping the adopted VM: %v", err)
	}
	must(t, v.Shutdown(ctx))
	select {
	case <-w.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the booting side did not see the VMM end")
	}
	if l := leftovers(dir); len(l) > 0 {
		t.Errorf("left running: %v", l)
	}
}
