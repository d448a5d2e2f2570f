// Package oci reads a bundle's OCI runtime spec and turns it into what the
// VM needs: its size (VMSize), the spec the guest runs (GuestSpec: host
// paths replaced by guest ones, host bind mounts turned into exports of the
// VM's share), and checks on a process (Process).
//
// # What crosses into the VM, and what cannot
//
// A microVM has its own kernel: nothing that names a host object (a path,
// a namespace, a device number, a CPU number) means the same thing inside.
// Each such field is translated, refused with an error that says why, or
// dropped with a Warning. Nothing is dropped silently.
//
//   - root.path: replaced by the guest root (rootfs.RootPath).
//   - mounts: bind mounts of host directories and files become exports of
//     the VM's share (below); proc, sysfs, devpts, tmpfs, mqueue, cgroup and cgroup2
//     pass through. Any other type, a bind of a host socket, FIFO or device
//     node, an idmapped mount that is not a bind and "shared"/"rshared"
//     propagation (which would have to reach the host) are errors.
//     private/slave/unbindable propagation passes through: it then only
//     relates guest mounts, which is all a VM can offer. An idmapped bind
//     (uidMappings/gidMappings, or "idmap"/"ridmap" with the container's
//     mappings) is exported through an idmapped mount on the host; the
//     guest binds it plainly.
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
//     net/tun, fuse); any other host device is an error, except in a
//     privileged container (every device allowed, CAP_SYS_ADMIN), where
//     privileged means the VM's own devices: the host's are dropped with a
//     Warning.
//   - linux.resources: cpu.cpus and cpu.mems name host CPUs and NUMA nodes
//     (the VM is sized from them instead; VMSize) and blockIO per-device
//     rules name host devices: they are dropped with a Warning. The rest
//     passes through to the guest's cgroups.
//   - linux.intelRdt, and the windows, solaris, vm and zos sections: errors.
//
// # Binds (the convention msb-agent implements)
//
// Each bind mount i of the spec is one export, share.BindName(i), of exactly
// its source (package share): a file bind exports that file, never its
// directory; a directory bind the directory, with its submounts for
// "rbind"; read-only as the bind's "ro"/"rro" say; symlinks in the source are
// resolved on the host first. The shim binds each export into the VM's share
// on the host, read-only there too, so a hostile guest cannot write through
// it whatever it mounts. The guest spec's bind source becomes the export's
// guest path (share.GuestPath) and keeps its options, so the spec stays a
// plain OCI spec and the agent binds it like any other.
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
