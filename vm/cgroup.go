package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// HostLimits bound what one VM takes of the host: its VMM and the VMM's
// helpers (virtiofsd) run in a host cgroup of their own, with a memory
// limit of the VM's memory plus VMMOverheadMiB and, when set, a CPU quota.
// The guest cannot lift either, whatever it runs.
type HostLimits struct {
	// Cgroup is the cgroup's path below the cgroup root, the same in every
	// v1 hierarchy and on v2 (e.g. /kubepods/pod1/msb-<id>); its base name
	// starts with CgroupPrefix. Start creates it and the VM's end removes
	// it. "" leaves the VM in the caller's cgroup, unbounded.
	Cgroup string
	// CPUQuota and CPUPeriod (µs) bound the VM's host CPU time per period;
	// a quota of 0 leaves it unbounded.
	CPUQuota  int64
	CPUPeriod uint64
}

// CgroupPrefix starts the base name of every VM's host cgroup: cleanup
// kills what runs in a recorded cgroup, and only ever in one of these.
const CgroupPrefix = "msb-"

// VMMOverheadMiB is what the VMM and its helpers take on the host beyond
// the guest's memory; the host cgroup's memory limit is the VM's memory
// plus this. Measured on QEMU 7.2 TCG (the heaviest backend: no KVM here)
// with a 256 MiB VM, after a guest that filled its memory, ran find, sort,
// sha256sum and gzip over debian's /usr, and read 8×4000 files through
// virtiofs: QEMU's anonymous memory 90 MiB (64 of it TCG's translation
// cache, bounded by tcgCacheMiB), its mapped binary and libraries 43 MiB,
// kernel memory charged to the cgroup up to 15 MiB, virtiofsd 5 MiB
// resident (1.9 anonymous); 148 MiB in all. Page cache the VMM charges
// (disk images) is reclaimed at the limit, so it need not fit. The rest is
// headroom.
const VMMOverheadMiB = 192

func (h *HostLimits) validate() error {
	if h.Cgroup == "" {
		if h.CPUQuota != 0 {
			return errors.New("host CPU quota without a host cgroup")
		}
		return nil
	}
	if !filepath.IsAbs(h.Cgroup) || filepath.Clean(h.Cgroup) != h.Cgroup ||
		!strings.HasPrefix(filepath.Base(h.Cgroup), CgroupPrefix) {
		return fmt.Errorf("host cgroup %q must be a clean absolute path whose name starts with %q", h.Cgroup, CgroupPrefix)
	}
	if h.CPUQuota < 0 || (h.CPUQuota > 0 && (h.CPUPeriod < 1000 || h.CPUPeriod > 1000000)) {
		return fmt.Errorf("host CPU quota %d per %d µs is out of range (period 1000-1000000)", h.CPUQuota, h.CPUPeriod)
	}
	return nil
}

// memoryLimit is the host cgroup's memory limit in bytes.
func (s *Spec) memoryLimit() int64 {
	return int64(uint64(s.MemoryMiB)+VMMOverheadMiB) << 20
}

// hostCgroup is one VM's host cgroup, through containerd's cgroups
// library: one directory per hierarchy on cgroup v1, one on v2.
type hostCgroup struct {
	path string
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
}

// v2Root is where cgroup v2 is mounted on a unified host.
const v2Root = "/sys/fs/cgroup"

// newHostCgroup creates the VM's host cgroup with res set; nil when spec
// names none.
func newHostCgroup(spec *Spec, res *specs.LinuxResources) (*hostCgroup, error) {
	path := spec.Host.Cgroup
	if path == "" {
		return nil, nil
	}
	h := &hostCgroup{path: path}
	var err error
	switch cgroups.Mode() {
	case cgroups.Unified:
		h.v2, err = cgroup2.NewManager(v2Root, path, cgroup2.ToResources(res))
	case cgroups.Legacy, cgroups.Hybrid:
		h.v1, err = cgroup1.New(cgroup1.StaticPath(path), res)
	default:
		err = fmt.Errorf("no cgroup file system on %s: %w", v2Root, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		// v1 creates one hierarchy after the other: undo the first ones.
		_ = RemoveHostCgroup(path)
		return nil, fmt.Errorf("create host cgroup %s: %w", path, err)
	}
	return h, nil
}

// hostResources are the host cgroup's limits: memory at creation, before
// the VMM runs; the CPU quota too when withCPU.
func (s *Spec) hostResources(withCPU bool) *specs.LinuxResources {
	limit := s.memoryLimit()
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	if withCPU && s.Host.CPUQuota > 0 {
		quota, period := s.Host.CPUQuota, s.Host.CPUPeriod
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return res
}

// add moves processes into the cgroup (all their threads; later children
// are born there).
func (h *hostCgroup) add(pids ...int) error {
	if h == nil {
		return nil
	}
	for _, pid := range pids {
		var err error
		if h.v2 != nil {
			err = h.v2.AddProc(uint64(pid))
		} else {
			err = h.v1.AddProc(uint64(pid))
		}
		if err != nil {
			return fmt.Errorf("move pid %d into host cgroup %s: %w", pid, h.path, err)
		}
	}
	return nil
}

// setCPU applies the CPU quota of res.
func (h *hostCgroup) setCPU(res *specs.LinuxResources) error {
	if h == nil || res.CPU == nil {
		return nil
	}
	cpu := &specs.LinuxResources{CPU: res.CPU}
	var err error
	if h.v2 != nil {
		err = h.v2.Update(cgroup2.ToResources(cpu))
	} else {
		err = h.v1.Update(cpu)
	}
	if err != nil {
		return fmt.Errorf("host cgroup %s: CPU quota: %w", h.path, err)
	}
	return nil
}

func (h *hostCgroup) remove() error {
	if h == nil {
		return nil
	}
	return RemoveHostCgroup(h.path)
}

// cgroupEmptyWait bounds how long RemoveHostCgroup waits for the killed
// processes to leave the cgroup.
const cgroupEmptyWait = 5 * time.Second

// RemoveHostCgroup kills whatever still runs in a VM's host cgroup and
// removes it; a cgroup that is gone already is fine. shim delete calls it
// with the path recorded before the cgroup was made.
func RemoveHostCgroup(path string) error {
	if !strings.HasPrefix(filepath.Base(path), CgroupPrefix) || !filepath.IsAbs(path) {
		return fmt.Errorf("refusing to empty cgroup %q: not a VM's host cgroup", path)
	}
	h, err := loadHostCgroup(path)
	if h == nil || err != nil {
		return err
	}
	if err := killAll(h.procs); err != nil {
		return fmt.Errorf("host cgroup %s: %w", path, err)
	}
	if err := h.delete(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove host cgroup %s: %w", path, err)
	}
	return nil
}

// RemoveEmptyHostCgroup removes a VM's host cgroup (in every hierarchy)
// if nothing runs in it, as Release does: what still runs there is not
// the caller's to kill. A cgroup that is gone already is fine.
func RemoveEmptyHostCgroup(path string) error {
	h, err := loadHostCgroup(path)
	if err != nil {
		return fmt.Errorf("host cgroup %s: %w", path, err)
	}
	return h.removeEmpty()
}

// loadHostCgroup opens an existing cgroup (in every v1 hierarchy); nil
// for a v1 one that is gone.
func loadHostCgroup(path string) (*hostCgroup, error) {
	h := &hostCgroup{path: path}
	var err error
	if cgroups.Mode() == cgroups.Unified {
		h.v2, err = cgroup2.Load(path)
	} else {
		h.v1, err = cgroup1.Load(cgroup1.StaticPath(path))
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

// procs lists the processes in the cgroup.
func (h *hostCgroup) procs() ([]int, error) {
	if h.v2 != nil {
		return v2Procs(h.v2)
	}
	return v1Procs(h.v1)
}

func (h *hostCgroup) delete() error {
	if h.v2 != nil {
		return h.v2.Delete()
	}
	return h.v1.Delete()
}

// killAll kills the processes procs lists until it lists none.
func killAll(procs func() ([]int, error)) error {
	deadline := time.Now().Add(cgroupEmptyWait)
	for {
		pids, err := procs()
		if errors.Is(err, os.ErrNotExist) || (err == nil && len(pids) == 0) {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still run in it after %s", pids, cgroupEmptyWait)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func v2Procs(m *cgroup2.Manager) ([]int, error) {
	ps, err := m.Procs(true)
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, int(p))
	}
	return out, err
}

// v1Procs lists the processes in any of the cgroup's hierarchies.
func v1Procs(cg cgroup1.Cgroup) ([]int, error) {
	var out []int
	for _, s := range cg.Subsystems() {
		ps, err := cg.Processes(s.Name(), true)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if !slices.Contains(out, p.Pid) {
				out = append(out, p.Pid)
			}
		}
	}
	return out, nil
}
