// Package share lays out a VM's one virtio-fs share: which host files and
// directories a container gets in the VM (its exports), and where the guest
// finds each of them.
//
// Every VM has exactly one share, tag Tag, mounted by the agent at GuestDir
// when it boots. It serves a directory the shim owns in its own mount
// namespace: a small tmpfs holding, per container, one mount per export at
// <container id>/<export name>, and nothing else. An export is exactly what
// the OCI spec or the snapshotter gives: a file bind is that file (not its
// directory), a directory bind is that directory, with or without its
// submounts as the bind says, read-only on the host where the bind is
// read-only (so the host enforces it, not only the guest's own mount). EROFS
// layers and writable layers that do not reach the VM as disks are exported
// as files too: the guest kernel mounts them, never the host's.
//
// The package is the contract between the shim, which binds the exports
// (shim/sharedir), and the guest mount plans that name them (GuestPath).
package share

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	// Tag is the virtio-fs tag of the VM's share.
	Tag = "msb"
	// GuestDir is where the agent mounts the share at boot.
	GuestDir = "/run/msb/share"
	// KernelArg tells the agent to mount the share (msb.share=<tag>).
	KernelArg = kernelArgKey + Tag

	kernelArgKey = "msb.share="
)

// TagFromCmdline is the share's tag that a kernel command line names, if
// any: the agent mounts that share at GuestDir.
func TagFromCmdline(cmdline string) (string, bool) {
	for _, f := range strings.Fields(cmdline) {
		if tag, ok := strings.CutPrefix(f, kernelArgKey); ok && tag != "" {
			return tag, true
		}
	}
	return "", false
}

// Export is one host file or directory a container has in the VM.
type Export struct {
	// Name is the export's name in the container's directory of the share.
	Name string
	// Source is the host file or directory.
	Source string
	// Dir says Source is a directory (else a regular file).
	Dir bool
	// ReadOnly makes the top mount of the export read-only.
	ReadOnly bool
	// Recursive takes the mounts below a directory along (rbind); without
	// it the guest sees what lies under them.
	Recursive bool
	// RecursiveReadOnly makes every mount of the export read-only (rro).
	RecursiveReadOnly bool
	// UIDMap and GIDMap ("container:host:size[,...]"), when set, show the
	// export through an idmapped mount.
	UIDMap, GIDMap string
	// FollowHost: the host's later mounts below Source reach the export
	// (rslave).
	FollowHost bool
	// Own says Source is a mount the shim made itself (a root it mounted
	// on the host), found in its own mount namespace, not the host's.
	Own bool
}

// Writable says whether any part of the export may be written.
func (e Export) Writable() bool { return !e.ReadOnly && !e.RecursiveReadOnly }

// validName accepts ^[a-z][a-z0-9]{0,15}$. Not a regexp: compiling one
// at package init cost the guest agent's start 6 ms under emulation.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 16 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Validate checks the export's name and source.
func (e Export) Validate() error {
	switch {
	case !validName(e.Name):
		return fmt.Errorf("export name %q is invalid: %w", e.Name, errdefs.ErrInvalidArgument)
	case !path.IsAbs(e.Source) || path.Clean(e.Source) != e.Source:
		return fmt.Errorf("export %s: source %q is not an absolute clean path: %w", e.Name, e.Source, errdefs.ErrInvalidArgument)
	case !e.Dir && e.Recursive:
		return fmt.Errorf("export %s: a file has no submounts to take along: %w", e.Name, errdefs.ErrInvalidArgument)
	case (e.UIDMap == "") != (e.GIDMap == ""):
		return fmt.Errorf("export %s: an idmapped export needs uid and gid mappings: %w", e.Name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// GuestPath is where the guest finds container id's export name.
func GuestPath(id, name string) string { return path.Join(GuestDir, id, name) }

// BindName names the export of the spec's mount number i.
func BindName(i int) string { return fmt.Sprintf("m%d", i) }
