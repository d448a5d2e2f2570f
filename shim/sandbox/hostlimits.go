package sandbox

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-runtime/msb/oci"
	"github.com/msb-runtime/msb/vm"
)

// HostLimits are the host limits of the VM that boots for spec's
// container id: a host cgroup next to the one runc would give the
// container (so under the pod's cgroup parent for a CRI pod's sandbox),
// with the CPU limit of sized (the spec the VM is sized from: the pod's
// limits for a pod's sandbox) as its quota. A VM larger than the host can
// give is refused here, before anything is mounted or booted.
func HostLimits(spec, sized *specs.Spec, id string, memMiB uint32) (vm.HostLimits, error) {
	var cgroupsPath string
	if spec.Linux != nil {
		cgroupsPath = spec.Linux.CgroupsPath
	}
	parent, err := cgroupParent(cgroupsPath, vm.OwnCgroup)
	if err != nil {
		return vm.HostLimits{}, err
	}
	h := vm.HostLimits{Cgroup: path.Join(parent, vm.CgroupPrefix+id)}
	h.CPUQuota, h.CPUPeriod = oci.CPUQuota(sized)
	return h, vm.CheckHostMemory(memMiB, h.Cgroup)
}

// cgroupParent is the cgroup a VM's host cgroup goes under, from the
// container's linux.cgroupsPath: its parent directory for a cgroupfs path
// (relative ones below own, the shim's cgroup, as runc reads them), the
// slice for a systemd one ("slice:prefix:name"), and own without one.
func cgroupParent(cgroupsPath string, own func() (string, error)) (string, error) {
	if slice, ok := systemdSlice(cgroupsPath); ok {
		return expandSlice(slice)
	}
	if path.IsAbs(cgroupsPath) {
		return path.Dir(path.Clean(cgroupsPath)), nil
	}
	base, err := own()
	if err != nil {
		return "", err
	}
	if cgroupsPath == "" {
		return base, nil
	}
	p := path.Join(base, path.Dir(cgroupsPath))
	if !strings.HasPrefix(p+"/", base+"/") && base != "/" {
		return "", fmt.Errorf("linux.cgroupsPath %q leaves the runtime's cgroup: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// systemdSlice returns the slice of a systemd cgroups path, which runc and
// CRI write "slice:prefix:name" (system.slice when the slice is empty).
func systemdSlice(p string) (string, bool) {
	parts := strings.Split(p, ":")
	if len(parts) != 3 || strings.Contains(p, "/") {
		return "", false
	}
	if parts[0] == "" {
		return "system.slice", true
	}
	return parts[0], true
}

// expandSlice turns a systemd slice name into its cgroup path, as systemd
// does: each dash starts a child slice ("a-b.slice" is
// /a.slice/a-b.slice); "-.slice" is the root. The VM's cgroup is a plain
// directory in it, not a systemd unit: the shim speaks no D-Bus. (Not
// tried on a systemd host: this one has none.)
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" {
		return "", fmt.Errorf("cgroups path slice %q is not a systemd slice name: %w", slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		return "/", nil
	}
	p, prefix := "/", ""
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("cgroups path slice %q has an empty component: %w", slice, errdefs.ErrInvalidArgument)
		}
		prefix += part
		p = path.Join(p, prefix+".slice")
		prefix += "-"
	}
	return p, nil
}
