package vm

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
)

// memBound is one bound on what the host can give a VM.
type memBound struct {
	mib  uint64
	what string
}

// CheckHostMemory refuses, before anything boots, a VM of memMiB whose
// memory and VMM overhead exceed what the host can give: its MemTotal, or
// a lower memory limit of an ancestor of the VM's host cgroup (of the
// caller's own cgroup, where the VM runs without one: cgroup ""). Such a
// VM would otherwise start and fail later with an error that does not say
// why.
func CheckHostMemory(memMiB uint32, cgroup string) error {
	bounds, err := hostMemory(cgroup)
	if err != nil {
		return fmt.Errorf("host memory: %w", err)
	}
	return fits(uint64(memMiB), bounds)
}

func fits(memMiB uint64, bounds []memBound) error {
	need := memMiB + VMMOverheadMiB
	for _, b := range bounds {
		if need > b.mib {
			return fmt.Errorf("VM memory %d MiB plus %d MiB VMM overhead exceeds the %d MiB of memory the host can give (%s): %w",
				memMiB, VMMOverheadMiB, b.mib, b.what, errdefs.ErrResourceExhausted)
		}
	}
	return nil
}

// hostMemory lists MemTotal and the memory limits on the way to the VM's
// host cgroup, or to the caller's own cgroup for none.
func hostMemory(cgroup string) ([]memBound, error) {
	total, err := memTotalMiB()
	if err != nil {
		return nil, err
	}
	bounds := []memBound{{total, "MemTotal"}}
	var limit func(string) (uint64, bool)
	switch cgroups.Mode() {
	case cgroups.Unified:
		limit = func(p string) (uint64, bool) { return readLimit(filepath.Join(v2Root, p, "memory.max")) }
	case cgroups.Legacy, cgroups.Hybrid:
		root, err := v1MemoryRoot()
		if err != nil {
			return bounds, nil // no memory controller: no limit either
		}
		limit = func(p string) (uint64, bool) { return readLimit(filepath.Join(root, p, "memory.limit_in_bytes")) }
	default:
		return bounds, nil
	}
	parent := filepath.Dir(cgroup)
	if cgroup == "" {
		if parent, err = OwnCgroup(); err != nil {
			return nil, err
		}
	}
	return append(bounds, cgroupLimits(parent, limit)...), nil
}

// OwnCgroup is the calling process's cgroup: on v1, the one of its memory
// hierarchy, which holds the limits that matter here.
func OwnCgroup() (string, error) {
	var (
		p   string
		err error
	)
	if cgroups.Mode() == cgroups.Unified {
		p, err = cgroup2.NestedGroupPath("")
	} else {
		p, err = cgroup1.NestedPath("")(cgroup1.Memory)
	}
	if err != nil {
		return "", fmt.Errorf("own cgroup: %w", err)
	}
	return p, nil
}

// cgroupLimits are the memory limits of cgroup p and its ancestors that
// exist and set one.
func cgroupLimits(p string, limit func(string) (uint64, bool)) []memBound {
	var out []memBound
	for {
		if mib, ok := limit(p); ok {
			out = append(out, memBound{mib, "memory limit of cgroup " + p})
		}
		if p == "/" || p == "." || p == "" {
			return out
		}
		p = filepath.Dir(p)
	}
}

// unlimited is the smallest limit taken for none: v1 writes "no limit" as
// the largest page-aligned int64.
const unlimited = 1 << 62

// readLimit reads a memory limit file in MiB; false when the file is
// missing or says there is no limit.
func readLimit(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v >= unlimited {
		return 0, false // "max" on v2
	}
	return v >> 20, true
}

// v1MemoryRoot is where the v1 memory hierarchy is mounted.
func v1MemoryRoot() (string, error) {
	subs, err := cgroup1.Default()
	if err != nil {
		return "", err
	}
	for _, s := range subs {
		if p, ok := s.(interface{ Path(string) string }); ok && s.Name() == cgroup1.Memory {
			return p.Path("/"), nil
		}
	}
	return "", fmt.Errorf("no v1 memory hierarchy")
}

func memTotalMiB() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo MemTotal: %w", err)
			}
			return kb >> 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal")
}
