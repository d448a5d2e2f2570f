package container

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/agent/mount"
)

// parseSpec decodes the OCI spec the host sent.
func parseSpec(b []byte) (*specs.Spec, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("no OCI spec: %w", errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("OCI spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// ociMount is one spec mount made ready for mount(2).
type ociMount struct {
	Dest   string // clean absolute path inside the root
	Type   string // "" for binds
	Source string
	Opts   mount.Options
	// Optional mounts are skipped when the kernel lacks the file system
	// (mqueue: libkrunfw has no POSIX message queues).
	Optional bool
}

// specMounts converts and validates the spec's mounts before anything is
// mounted. cgroupDir is the container's cgroup; a "cgroup"/"cgroup2" mount
// becomes a bind of it (what runc shows without a cgroup namespace, and the
// namespace root with one), or a cgroup2 mount when cgroupDir is "".
func specMounts(mounts []specs.Mount, cgroupDir string) ([]ociMount, error) {
	out := make([]ociMount, 0, len(mounts))
	for i, m := range mounts {
		om, err := convertMount(m, cgroupDir)
		if err != nil {
			return nil, fmt.Errorf("spec mount %d (%s on %q): %w", i, m.Type, m.Destination, err)
		}
		out = append(out, om)
	}
	return out, nil
}

func convertMount(m specs.Mount, cgroupDir string) (ociMount, error) {
	dest, err := cleanDest(m.Destination)
	if err != nil {
		return ociMount{}, err
	}
	om := ociMount{Dest: dest, Type: m.Type, Source: m.Source, Opts: mount.ParseOptions(m.Options)}
	switch {
	case m.Type == "bind" || m.Type == "rbind" || om.Opts.IsBind():
		om.Type = ""
		om.Opts.Flags |= unix.MS_BIND
		if m.Type == "rbind" {
			om.Opts.Flags |= unix.MS_REC
		}
		if !filepath.IsAbs(m.Source) {
			return ociMount{}, fmt.Errorf("bind source %q must be an absolute guest path: %w", m.Source, errdefs.ErrInvalidArgument)
		}
	case m.Type == "cgroup" || m.Type == "cgroup2":
		om.Type, om.Source = "cgroup2", "cgroup2"
		om.Opts.Data = nil // v1 controller names mean nothing to cgroup2
		if cgroupDir != "" {
			om.Type, om.Source = "", cgroupDir
			om.Opts.Flags |= unix.MS_BIND | unix.MS_REC
		}
	case m.Type == "":
		return ociMount{}, fmt.Errorf("no type: %w", errdefs.ErrInvalidArgument)
	case m.Type == "mqueue":
		om.Optional = true
	}
	if om.Source == "" {
		om.Source = m.Type
	}
	return om, nil
}

// cleanDest accepts absolute destinations without ".." components.
func cleanDest(dest string) (string, error) {
	if !filepath.IsAbs(dest) {
		return "", fmt.Errorf("destination %q is not absolute: %w", dest, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(dest, "/") {
		if part == ".." {
			return "", fmt.Errorf("destination %q contains '..': %w", dest, errdefs.ErrInvalidArgument)
		}
	}
	return filepath.Clean(dest), nil
}

// hasNamespace says whether the spec asks for a namespace of type t.
func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// pidNamespace says what the spec asks of the PID namespace: a new one (a
// pid entry without a path), to join another container's ("container:<id>",
// joinID), or none (the VM's, shared with the agent). Any other path names
// a host namespace, which the guest cannot join.
func pidNamespace(s *specs.Spec) (own bool, joinID string, err error) {
	if s.Linux == nil {
		return false, "", nil
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type != specs.PIDNamespace {
			continue
		}
		if ns.Path == "" {
			return true, "", nil
		}
		id, ok := api.ParseContainerNamespace(ns.Path)
		if !ok {
			return false, "", fmt.Errorf("pid namespace path %q: only \"container:<id>\" can be joined in the guest: %w",
				ns.Path, errdefs.ErrInvalidArgument)
		}
		return true, id, nil
	}
	return false, "", nil
}

// bindsDev says whether the spec bind-mounts /dev, in which case the agent
// creates no device nodes (runc's rule).
func bindsDev(mounts []ociMount) bool {
	for _, m := range mounts {
		if m.Dest == "/dev" && m.Opts.IsBind() {
			return true
		}
	}
	return false
}

// seccompOf is the spec's seccomp profile, for the init process and every
// exec alike (an exec's process spec has none of its own); nil when there
// is none, as for a privileged container, for which CRI sends none.
func seccompOf(s *specs.Spec) *specs.LinuxSeccomp {
	if s.Linux == nil {
		return nil
	}
	return s.Linux.Seccomp
}
