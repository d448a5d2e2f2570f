package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Settings converts the OCI resources the guest honours into cgroup v2 file
// writes (file name → value). Block I/O weights, hugepages, network and RDMA
// are left out: the VM's own sizing is the hard limit. Devices are no file
// write in v2: DeviceRules and Group.SetDevices install them.
func Settings(r *specs.LinuxResources) map[string]string {
	s := map[string]string{}
	if r == nil {
		return s
	}
	memorySettings(r.Memory, s)
	cpuSettings(r.CPU, s)
	if r.Pids != nil && r.Pids.Limit != nil {
		s["pids.max"] = maxOr(*r.Pids.Limit)
	}
	for k, v := range r.Unified {
		s[k] = v
	}
	return s
}

func memorySettings(m *specs.LinuxMemory, s map[string]string) {
	if m == nil {
		return
	}
	if m.Limit != nil && *m.Limit != 0 {
		s["memory.max"] = maxOr(*m.Limit)
	}
	if m.Reservation != nil && *m.Reservation != 0 {
		s["memory.low"] = maxOr(*m.Reservation)
	}
	// OCI's swap is memory+swap (cgroup v1); v2 limits swap alone.
	if m.Swap != nil && *m.Swap != 0 {
		switch {
		case *m.Swap < 0:
			s["memory.swap.max"] = "max"
		case m.Limit != nil && *m.Limit > 0 && *m.Swap >= *m.Limit:
			s["memory.swap.max"] = strconv.FormatInt(*m.Swap-*m.Limit, 10)
		}
	}
}

func cpuSettings(c *specs.LinuxCPU, s map[string]string) {
	if c == nil {
		return
	}
	if c.Shares != nil && *c.Shares != 0 {
		s["cpu.weight"] = strconv.FormatUint(SharesToWeight(*c.Shares), 10)
	}
	if c.Quota != nil || c.Period != nil {
		period := uint64(100000)
		if c.Period != nil && *c.Period != 0 {
			period = *c.Period
		}
		quota := "max"
		if c.Quota != nil && *c.Quota > 0 {
			quota = strconv.FormatInt(*c.Quota, 10)
		}
		s["cpu.max"] = quota + " " + strconv.FormatUint(period, 10)
	}
	if c.Cpus != "" {
		s["cpuset.cpus"] = c.Cpus
	}
	if c.Mems != "" {
		s["cpuset.mems"] = c.Mems
	}
}

// SharesToWeight maps cgroup v1 cpu.shares (2-262144) onto cgroup v2
// cpu.weight (1-10000), the conversion runc and crun use.
func SharesToWeight(shares uint64) uint64 {
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

func maxOr(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// Apply writes the settings into the group, cpuset first (the others do not
// depend on it, but an empty cpuset makes a group unusable). It returns
// every write that failed.
func (g *Group) Apply(settings map[string]string) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ci, cj := strings.HasPrefix(keys[i], "cpuset."), strings.HasPrefix(keys[j], "cpuset.")
		if ci != cj {
			return ci
		}
		return keys[i] < keys[j]
	})
	var errs []error
	for _, k := range keys {
		if strings.Contains(k, "/") || k != filepath.Base(k) {
			errs = append(errs, fmt.Errorf("cgroup file name %q is invalid", k))
			continue
		}
		if optional[k] && !exists(filepath.Join(g.Path, k)) {
			continue
		}
		if err := writeFile(g.Path, k, settings[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// optional are the files of controllers the guest kernel may lack: a guest
// without swap has no memory.swap.max, and a swap limit means nothing there
// (runc skips it alike). CRI sets one on every update.
var optional = map[string]bool{"memory.swap.max": true}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
