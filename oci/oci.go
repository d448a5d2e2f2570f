// Package oci reads a bundle's OCI runtime spec and turns it into what the
// VM needs: its size (VMSize), the spec the guest runs (GuestSpec: host
// paths replaced by guest ones, host bind mounts turned into virtio-fs
// shares), and checks on a process (Process).
//
// # What crosses into the VM, and what cannot
//
// A microVM has its own kernel: nothing that names a host object (a path,
// a namespace, a device number, a CPU number) means the same thing inside.
// Each such field is translated, refused with an error that says why, or
// dropped with a Warning. Nothing is dropped silently.
//
//   - root.path: replaced by the guest root (rootfs.RootPath).
//   - mounts: bind mounts of host directories and files become virtio-fs
//     shares (below); proc, sysfs, devpts, tmpfs, mqueue, cgroup and cgroup2
//     pass through. Any other type, a bind of a host socket, FIFO or device
//     node, an idmapped mount that is not a bind and "shared"/"rshared"
//     propagation (which would have to reach the host) are errors.
//     private/slave/unbindable propagation passes through: it then only
//     relates guest mounts, which is all a VM can offer. An idmapped bind
//     (uidMappings/gidMappings, or "idmap"/"ridmap" with the container's
//     mappings) gets a share of its own that the shim serves through an
//     idmapped mount on the host; the guest binds it plainly.
//   - linux.namespaces with a path: the network namespace is taken out of
//     the guest spec and returned as Guest.NetNS (the container runs in the
//     VM's network namespace; wiring the VM to that host namespace is the
//     VMM's job). A user namespace (with or without a path: CRI's pinned
//     one means nothing in the guest) becomes a new one in the guest, made
//     with the spec's uidMappings/gidMappings, whose host ids are guest
//     ids there. Any other namespace path is an error. Namespaces without
//     a path pass through.
//   - hooks: createRuntime, prestart, poststart and poststop run in the
//     runtime's (host) namespaces in runc's model; they are taken out of the
//     guest spec and returned as Guest.HostHooks for the shim to run on the
//     host, with the VMM's pid: the VMM then runs in a network namespace of
//     its own, which is what network hooks (nerdctl's) configure and the
//     VM's NIC mirrors. createContainer and startContainer
//     run inside the container, where the host's hook binaries do not exist:
//     an error.
//   - linux.devices: only the devices every Linux guest has with the same
//     numbers pass (null, zero, full, random, urandom, tty, console, ptmx,
//     net/tun, fuse); any other host device is an error.
//   - linux.resources: cpu.cpus and cpu.mems name host CPUs and NUMA nodes
//     (the VM is sized from them instead; VMSize) and blockIO per-device
//     rules name host devices: they are dropped with a Warning. The rest
//     passes through to the guest's cgroups.
//   - linux.intelRdt, and the windows, solaris, vm and zos sections: errors.
//
// # Shares (the convention msb-agent implements)
//
// Every host directory a bind mount needs is one virtio-fs share:
//
//   - a directory bind shares the directory; a file bind shares the file's
//     parent directory and binds the file inside it (the guest can see the
//     file's siblings, read-only when every bind of that directory is);
//   - symlinks in the source are resolved on the host first;
//   - one share per distinct host directory; a directory inside another
//     shared one reuses that share unless it would need write access to a
//     read-only share; a share is read-only when every bind using it is;
//   - the tag is "<base>-<hash>": up to 12 bytes of the directory's base
//     name (other bytes than [A-Za-z0-9._-] become '_') and 12 hex digits of
//     sha256("<dir>\x00ro" or "<dir>\x00rw"), with an "s" in front when the
//     name does not start with a letter or digit: deterministic, at most 26
//     bytes, [A-Za-z0-9._-].
//
// The guest mounts share <tag> at /run/msb/c/<id>/shares/<tag> (rootfs.GuestDir
// + "/shares/<tag>"). GuestSpec returns those mounts as agent mount plan
// steps, Guest.Mounts ({type: virtiofs, source: <tag>, target:
// .../shares/<tag>, options: [ro|rw]}); the shim puts them in front of the
// rootfs plan (CreateContainerRequest.rootfs = Guest.Mounts +
// rootfs.Plan.Mounts), so the root stays the last target and the agent needs
// nothing beyond the plan it already runs. The guest spec's bind mounts then
// have sources under those directories, and the spec stays a plain OCI spec.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigFile is the spec's file name in a bundle.
const ConfigFile = "config.json"

// Load reads <bundle>/config.json. Errors name the file, and for bad JSON
// the line and column.
func Load(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read OCI spec %s: %w: %w", p, err, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read OCI spec %s: %w", p, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse OCI spec %s%s: %v: %w", p, jsonPosition(b, err), err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// jsonPosition turns a JSON error's byte offset into " (line L, column C)".
func jsonPosition(b []byte, err error) string {
	var off int64
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	default:
		return ""
	}
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	before := b[:off]
	line := strings.Count(string(before), "\n") + 1
	col := int(off) - strings.LastIndexByte(string(before), '\n')
	return fmt.Sprintf(" (line %d, column %d)", line, col)
}
