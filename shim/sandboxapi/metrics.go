package sandboxapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	sandboxAPI "github.com/containerd/containerd/api/runtime/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/shim/sandbox"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux architecture msb runs on).
const clockTicks = 100

// SandboxMetrics returns the VM's cost on the host (its VMM's and helpers'
// memory and CPU) beside its containers' cgroups in the guest.
func (s *Service) SandboxMetrics(ctx context.Context, r *sandboxAPI.SandboxMetricsRequest) (*sandboxAPI.SandboxMetricsResponse, error) {
	sb, err := s.running(r.GetSandboxID(), errdefs.ErrFailedPrecondition)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	m := &SandboxMetrics{Host: hostCost(os.Getpid(), adoptedPids(sb)...), Containers: map[string][]byte{}}
	for _, id := range s.tasks.Containers() {
		actx, cancel := context.WithTimeout(ctx, sandbox.AgentTimeout)
		st, err := sb.Agent().Stats(actx, &api.ContainerRequest{Id: id})
		cancel()
		if err != nil {
			log.G(ctx).WithError(err).Debugf("no guest metrics for %s", id)
			continue
		}
		m.Containers[id] = st.GetMetrics()
	}
	data, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, err
	}
	return &sandboxAPI.SandboxMetricsResponse{Metrics: &types.Metric{
		Timestamp: protobuf.ToTimestamp(time.Now()), ID: r.GetSandboxID(), Data: data,
	}}, nil
}

// adoptedPids are the VM's processes when the shim adopted them from the
// warm pool instead of starting them: they are not its descendants.
func adoptedPids(sb sandbox.Sandbox) []int {
	if a, ok := sb.(interface{ HostPids() []int }); ok {
		return a.HostPids()
	}
	return nil
}

// hostCost measures the shim's descendants, the VMM and its helpers, and
// the processes adopted with theirs.
func hostCost(shim int, adopted ...int) *HostCost {
	c := &HostCost{}
	pids := descendants(shim)
	for _, a := range adopted {
		if !slices.Contains(pids, a) {
			pids = append(append(pids, a), descendants(a)...)
		}
	}
	for _, pid := range pids {
		p, err := measure(pid)
		if err != nil {
			continue // gone meanwhile
		}
		c.Processes = append(c.Processes, p)
		c.RssBytes += p.RssBytes
		c.PssBytes += p.PssBytes
		c.CpuUsec += p.UserUsec + p.SystemUsec
	}
	return c
}

// descendants lists the processes below pid.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := statFields(p); err == nil {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

// statFields are /proc/PID/stat's fields from the state (field 3) on.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return f, nil
}

// measure reads one process's memory (smaps_rollup) and CPU time (stat).
func measure(pid int) (*HostProcess, error) {
	f, err := statFields(pid)
	if err != nil {
		return nil, err
	}
	const utime, stime = 14 - 3, 15 - 3 // f[0] is field 3
	user, _ := strconv.ParseUint(f[utime], 10, 64)
	system, _ := strconv.ParseUint(f[stime], 10, 64)
	p := &HostProcess{Pid: uint32(pid), UserUsec: user * 1e6 / clockTicks, SystemUsec: system * 1e6 / clockTicks}
	if exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe")); err == nil {
		p.Name = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	}
	p.RssBytes, p.PssBytes, err = rollup(pid)
	return p, err
}

// rollup reads Rss and Pss from /proc/PID/smaps_rollup, in bytes.
func rollup(pid int) (rss, pss uint64, err error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "Rss":
			rss = kb << 10
		case "Pss":
			pss = kb << 10
		}
	}
	return rss, pss, sc.Err()
}
