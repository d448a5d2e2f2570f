// Package rootfs turns the rootfs mounts containerd hands the shim (the
// Rootfs of a CreateTask request) into what a microVM needs: virtio-blk
// disks, exports into the VM's share (package share), and the guest mount
// plan msb-agent runs in order to build the container's root (agent/api.Mount;
// the last mount's target is the root).
//
// # What the shim receives
//
// The shim claims MountCapabilities{types: [erofs], transforms: [format,
// mkdir, mkfs]}, so containerd's mount manager hands over the snapshotter's
// mounts untouched (shared/notes/containerd-erofs.md §4.1, §4.2). Two
// families are served:
//
//  1. The EROFS snapshotter in block mode (default_size set): an optional
//     "mkfs/ext4 <dir>/rwlayer.img" (the writable upper, created here when it
//     does not exist), N × "erofs <dir>/layer.erofs [ro, loop]" (top layer
//     first; an fsmeta.erofs carries its blobs as device= options, bottom
//     first), and a last "format/mkdir/overlay" or "format/mkdir/bind" whose
//     options are templates ({{ mount i }}, {{ overlay a b }}) over the
//     earlier mounts. The ext4 image and the top EROFS images become disks
//     as long as Options.Disks allows; the rest are exported as files, which
//     the guest kernel mounts itself (EROFS file-backed, ext4 on a loop
//     device). The host kernel never mounts or parses any of them. The
//     templates resolve to guest paths.
//  2. Snapshotters whose root is a host directory tree (overlayfs: one
//     "overlay" with host lowerdir/upperdir/workdir, or one "bind" for a
//     single layer or no parent). The shim mounts it on the host at
//     Options.HostRootfs (<bundle>/rootfs) with Plan.MountHost and exports
//     that directory; UnmountHost undoes it.
//
// Everything else is refused with an error that names the configuration to
// use, never served half-way: in particular the EROFS snapshotter's default
// (non-block) mode, whose upper directory lives on the host.
//
// # Guest paths (the convention msb-agent relies on)
//
// Everything for container <id> lives under GuestDir(id) = /run/msb/c/<id>:
//
//	rw           the ext4 upper image (the "mkfs/ext4" mount); the overlay's
//	             upper and work directories are rw/upper and rw/work
//	layers/<i>   the EROFS layer that is containerd mount number i
//	rootfs       the container root: always the last mount's target
//	             (RootPath(id)), also for the host-directory family
//
// # Disk serials and export names
//
// Serials are at most 20 bytes (virtio-blk) and unique within the VM: a
// per-container prefix (Options.SerialPrefix, default "c" + 8 hex digits of
// sha256(id)) followed by
//
//	-rw        the ext4 upper image
//	-l<i>      the EROFS image of containerd mount i
//	-l<i>d<j>  the j-th device= blob of mount i (fsmeta), j from 0
//
// The mount plan names disks as "disk:<serial>", in the source and in EROFS
// device= options. The same images exported as files are named "rw", "l<i>"
// and "l<i>d<j>" (share.GuestPath), and a host-mounted root "root".
package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"

	"github.com/msb-runtime/msb/agent/api"
	"github.com/msb-runtime/msb/share"
	"github.com/msb-runtime/msb/vm"
)

// GuestBase is the guest directory that holds every container's mounts.
const GuestBase = "/run/msb/c"

// DiskSource is the prefix of a guest mount source (or EROFS device= value)
// that names a virtio-blk disk by its serial.
const DiskSource = "disk:"

// MaxSerialPrefix is the longest Options.SerialPrefix: it leaves room for the
// longest suffix within virtio-blk's 20-byte serial.
const MaxSerialPrefix = 11

// Plan is what a container's root needs from the VM and the agent.
type Plan struct {
	// Disks are virtio-blk disks: EROFS layers (always read-only) and the
	// ext4 upper (read-write unless containerd asked for "ro").
	Disks []vm.Disk
	// Exports are what reaches the guest through the VM's share instead:
	// EROFS layers and the ext4 upper that have no disk (the guest kernel
	// mounts the files), or a root mounted on the host (a directory).
	Exports []share.Export
	// Mounts is the guest mount plan, run in order; the last target is Root.
	Mounts []*api.Mount
	// Root is the guest path of the container root, RootPath(id).
	Root string

	// HostMounts, when not empty, must be mounted on the host at HostRootfs
	// (MountHost) before the VM starts and unmounted (UnmountHost) after it
	// stopped: the export "root" serves that directory.
	HostMounts []mount.Mount
	HostRootfs string

	// Created lists files Prepare created (the ext4 upper image). They
	// belong to the snapshot from now on: containerd removes them with it.
	Created []string
}

// Options are the limits and tools of one Prepare call.
type Options struct {
	// Disks is how many virtio-blk disks this root may use: the ext4 upper
	// first, then the top layers. What has no disk reaches the guest as a
	// file in the VM's share; 0 puts everything there (a VM that runs
	// already takes no new disks).
	Disks int
	// SerialPrefix starts every disk serial (at most MaxSerialPrefix bytes
	// of [A-Za-z0-9._-]); "" derives one from the container ID. The shim
	// must keep prefixes unique within one VM.
	SerialPrefix string
	// HostRootfs is the host directory a host-mounted root is mounted on
	// and exported from: the bundle's rootfs directory.
	HostRootfs string
	// MkfsExt4 is mkfs.ext4; "" looks in $PATH, /usr/sbin and /sbin.
	MkfsExt4 string
}

var (
	idRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	serialRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// maxIDLen is containerd's identifier limit.
const maxIDLen = 76

func validID(id string) error {
	if len(id) == 0 || len(id) > maxIDLen || !idRE.MatchString(id) {
		return fmt.Errorf("container id %q is not a valid identifier ([A-Za-z0-9][A-Za-z0-9._-]*, at most %d): %w",
			id, maxIDLen, errdefs.ErrInvalidArgument)
	}
	return nil
}

// GuestDir is the guest directory that holds container id's mounts.
func GuestDir(id string) string { return path.Join(GuestBase, id) }

// RootPath is the guest path of container id's root file system.
func RootPath(id string) string { return path.Join(GuestBase, id, "rootfs") }

// DefaultSerialPrefix is the serial prefix used when Options.SerialPrefix is
// empty: "c" and the first 8 hex digits of sha256(id).
func DefaultSerialPrefix(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "c" + hex.EncodeToString(sum[:4])
}

func (o Options) withDefaults(id string) (Options, error) {
	if o.Disks < 0 {
		return o, fmt.Errorf("disk budget %d is negative: %w", o.Disks, errdefs.ErrInvalidArgument)
	}
	if o.SerialPrefix == "" {
		o.SerialPrefix = DefaultSerialPrefix(id)
	}
	if len(o.SerialPrefix) > MaxSerialPrefix || !serialRE.MatchString(o.SerialPrefix) {
		return o, fmt.Errorf("serial prefix %q is invalid (at most %d of [A-Za-z0-9._-]): %w",
			o.SerialPrefix, MaxSerialPrefix, errdefs.ErrInvalidArgument)
	}
	return o, nil
}

// Prepare turns containerd's rootfs mounts of container containerID into a
// Plan. It validates everything before it touches the file system; then it
// creates the ext4 upper image when it does not exist yet. When Prepare
// fails it removes what it created.
func Prepare(ctx context.Context, containerID string, mounts []*types.Mount, opts Options) (*Plan, error) {
	if err := validID(containerID); err != nil {
		return nil, err
	}
	opts, err := opts.withDefaults(containerID)
	if err != nil {
		return nil, err
	}
	if len(mounts) == 0 {
		return nil, fmt.Errorf("container %s has no rootfs mounts: msb needs the snapshotter's mounts: %w",
			containerID, errdefs.ErrInvalidArgument)
	}
	ms, err := parseMounts(mounts)
	if err != nil {
		return nil, err
	}
	if isHostShape(ms) {
		return hostPlan(containerID, ms[0], opts)
	}
	b := &builder{id: containerID, opts: opts, ms: ms}
	return b.build(ctx)
}

func diskSource(serial string) string { return DiskSource + serial }
